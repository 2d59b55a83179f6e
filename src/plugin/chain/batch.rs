//! Events that arrived together, through the chain together.
//!
//! One call into a component costs about as much as a small plugin's work on an event
//! (BENCHMARKS.md), so on a fast stream the calls, not the plugins, set the pace. A
//! plugin that exports `on-events` (the `batch-*` worlds) gets every event of a batch
//! in one call. The result is the same as event by event: each plugin still sees each
//! surviving event once, in stream order, and plugins cannot see each other, so running
//! plugin A over events 1..n before plugin B is indistinguishable from interleaving.
//!
//! Tracing sessions (a tape) batch too: each event of a batch call gets a step with the
//! plugin's verdict for it and an equal share of the call's time and fuel (a batch call
//! cannot tell which event took how long). Where batching could change an outcome, it
//! is not used: a plugin without `on-events` is called per event; and a batch call
//! that fails (trap, deadline, memory, a wrong number of verdicts) is counted and
//! logged once, its instance replaced, and its events retried one by one on the fresh
//! instance, so the failure policy applies to the event that causes the failure and
//! not to its neighbours.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    Dropped, Outcome, Session, Step, StepVerdict, TIMING_SAMPLE, applies, keeps_shape, too_large,
    within_limit,
};
use crate::plugin::bindings::{SseEvent, Verdict};
use crate::plugin::convert::{self, Direction, InFlight};
use crate::plugin::loaded::{CallFailure, Plugin};
use crate::sse::Event;

/// The most events handed over in one `on-events` call: bounds the memory a batch
/// takes in the guest and the time one call holds a worker thread.
pub const MAX_BATCH: usize = 64;

impl Session {
    /// True when no plugin of the chain sees events of the current phase (an empty
    /// chain, or only filters on the to-server side): every event would come out of
    /// [`Session::on_event`] as it went in, so the caller may skip the chain.
    pub fn passes_everything(&self) -> bool {
        match &self.phase {
            None => true,
            Some((direction, _)) => !self.chain.plugins.iter().any(|p| applies(p, *direction)),
        }
    }

    /// Runs several events, in stream order, through the chain; one outcome per event,
    /// as [`Session::on_event`] would give for each in turn. When tracing, each event's
    /// steps are in [`Session::event_steps`] afterwards.
    pub fn on_events(&mut self, events: Vec<Event>) -> Vec<Outcome> {
        let batching = events.len() > 1 && self.chain.plugins.iter().any(|p| p.batches());
        if self.steps.is_some() {
            // One (kept) buffer per event, empty.
            if self.event_steps.len() < events.len() {
                self.event_steps.resize_with(events.len(), Vec::new);
            }
            self.event_steps[..events.len()]
                .iter_mut()
                .for_each(Vec::clear);
            self.event_steps_len = events.len();
        }
        let Some((direction, _)) = &self.phase else {
            return events.into_iter().map(Outcome::Forward).collect();
        };
        if !batching {
            let mut outcomes = Vec::with_capacity(events.len());
            for (i, event) in events.into_iter().enumerate() {
                if let Some(steps) = &mut self.steps {
                    steps.clear();
                }
                outcomes.push(self.on_event(event));
                if let Some(steps) = &mut self.steps {
                    std::mem::swap(steps, &mut self.event_steps[i]);
                }
            }
            return outcomes;
        }
        let direction = *direction;
        let mut flights: Vec<InFlight> = events.into_iter().map(InFlight::new).collect();
        let mut dropped: Vec<Option<Dropped>> = flights.iter().map(|_| None).collect();
        for index in 0..self.slots.len() {
            let plugin = self.chain.plugins[index].clone();
            if !applies(&plugin, direction) {
                continue;
            }
            let live: Vec<usize> = (0..flights.len())
                .filter(|&i| dropped[i].is_none())
                .collect();
            if live.is_empty() {
                break;
            }
            let mut single: Vec<usize> = Vec::new();
            // Events over the plugin's `max_message_bytes` stay out of its batches;
            // `single_call` refuses them without calling it.
            let (live, over): (Vec<usize>, Vec<usize>) = match plugin.limits().max_message_bytes {
                None => (live, Vec::new()),
                Some(_) => live
                    .into_iter()
                    .partition(|&i| too_large(&plugin, &flights[i].event).is_none()),
            };
            single.extend(over);
            if plugin.batches() && live.len() > 1 {
                for part in live.chunks(MAX_BATCH) {
                    if !self.batch_call(index, &plugin, part, &mut flights, &mut dropped) {
                        single.extend_from_slice(part);
                    }
                }
            } else {
                single.extend(live);
            }
            for i in single {
                let verdict = self.single_call(index, &plugin, i, &flights[i]);
                self.apply(index, &plugin, verdict, &mut flights[i], &mut dropped[i]);
            }
        }
        flights
            .into_iter()
            .zip(dropped)
            .map(|(flight, dropped)| match dropped {
                None => Outcome::Forward(flight.into_event()),
                Some(Dropped { plugin, failure }) => Outcome::Dropped {
                    plugin,
                    failure,
                    event: flight.into_event(),
                },
            })
            .collect()
    }

    /// One `on-events` call for the events at `part`, its verdicts applied. False when
    /// the call failed (counted, logged, instance gone): the caller retries those events
    /// one at a time.
    fn batch_call(
        &mut self,
        index: usize,
        plugin: &Arc<Plugin>,
        part: &[usize],
        flights: &mut [InFlight],
        dropped: &mut [Option<Dropped>],
    ) -> bool {
        let sampled = self.calls.is_multiple_of(TIMING_SAMPLE);
        let traced = self.steps.is_some();
        self.calls = self.calls.wrapping_add(1);
        let Ok(instance) = self.ensure_instance(index) else {
            // Counted and logged where it failed; one by one, each event tries again.
            return false;
        };
        // Moved out for the call (no copy) and back in after it, whatever it answered.
        let events: Vec<SseEvent> = part
            .iter()
            .map(|&i| std::mem::replace(&mut flights[i].event, convert::empty_event()))
            .collect();
        let started = (sampled || traced).then(Instant::now);
        let result = instance.on_events(&events);
        let elapsed = started.map(|s| s.elapsed());
        let fuel = if traced { instance.fuel_used() } else { 0 };
        for (&i, event) in part.iter().zip(events) {
            flights[i].event = event;
        }
        let Some(result) = result else {
            return false;
        };
        self.chain.metrics[index].calls(part.len() as u64);
        self.chain.metrics[index].batch_call();
        let verdicts = match result {
            Ok(verdicts) => verdicts,
            Err(failure) => {
                self.discard(index);
                self.chain.metrics[index].failure(failure.kind);
                self.log_failure(
                    plugin,
                    &failure,
                    "on-events (retrying its events one at a time)",
                );
                return false;
            }
        };
        // Per event, a batch call counts as its share (the latency histogram, steps).
        let share = elapsed.map(|e| e / part.len() as u32);
        if sampled && let Some(share) = share {
            self.chain.metrics[index].call_time(share);
        }
        // Only called when tracing.
        let name = traced.then(|| self.step_names[index]);
        let step = |verdict: StepVerdict| Step {
            plugin: name.unwrap_or_default(),
            verdict,
            elapsed: share.unwrap_or(Duration::ZERO),
            fuel: fuel / part.len() as u64,
        };
        let limit = self.max_event_bytes;
        let direction = self.phase.as_ref().map_or(Direction::ToClient, |(d, _)| *d);
        let mut passed = 0;
        for (&i, verdict) in part.iter().zip(verdicts) {
            if matches!(verdict, Verdict::Pass) {
                if traced {
                    self.event_steps[i].push(step(StepVerdict::Pass));
                }
                passed += 1;
                continue;
            }
            let verdict = within_limit(verdict, limit)
                .and_then(|v| keeps_shape(direction, &flights[i].event, v));
            if traced {
                self.event_steps[i].push(step(StepVerdict::of(&verdict)));
            }
            self.apply(index, plugin, verdict, &mut flights[i], &mut dropped[i]);
        }
        self.chain.metrics[index].pass_many(passed);
        true
    }

    /// One `on-event` call for event `i` of a batch (a plugin without `on-events`, or
    /// a retry after a failed batch call); its step recorded when tracing.
    fn single_call(
        &mut self,
        index: usize,
        plugin: &Plugin,
        i: usize,
        flight: &InFlight,
    ) -> Result<Verdict, CallFailure> {
        let sampled = self.calls.is_multiple_of(TIMING_SAMPLE);
        let traced = self.steps.is_some();
        self.calls = self.calls.wrapping_add(1);
        let limit = self.max_event_bytes;
        let direction = self.phase.as_ref().map_or(Direction::ToClient, |(d, _)| *d);
        // As in `on_event`: the step includes creating the instance, the histogram not.
        let started = traced.then(Instant::now);
        let (mut fuel, mut call_time) = (0, None);
        let verdict = match too_large(plugin, &flight.event) {
            Some(failure) => Err(failure),
            None => match self.ensure_instance(index) {
                Ok(instance) => {
                    let called = sampled.then(Instant::now);
                    let verdict = instance.on_event(&flight.event);
                    call_time = called.map(|called| called.elapsed());
                    if traced {
                        fuel = instance.fuel_used();
                    }
                    self.chain.metrics[index].calls(1);
                    verdict
                        .and_then(|v| within_limit(v, limit))
                        .and_then(|v| keeps_shape(direction, &flight.event, v))
                }
                Err(failure) => Err(failure),
            },
        };
        if let Some(elapsed) = call_time {
            self.chain.metrics[index].call_time(elapsed);
        }
        if let Some(started) = started {
            self.event_steps[i].push(Step {
                plugin: self.step_names[index],
                verdict: StepVerdict::of(&verdict),
                elapsed: started.elapsed(),
                fuel,
            });
        }
        verdict
    }
}
