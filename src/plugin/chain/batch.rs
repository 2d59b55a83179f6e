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

use super::{Outcome, Session, StepVerdict, Stop, applies, keeps_shape, too_large, within_limit};
use crate::plugin::bindings::{SseEvent, Verdict};
use crate::plugin::convert::{self, Direction, InFlight};
use crate::plugin::loaded::Answer;
use crate::plugin::loaded::Plugin;
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
        // A chain with a 0.2 plugin that sees these events goes event by event: a
        // `hold` stops the events behind it, which a batch would already have run.
        let batching = events.len() > 1
            && !self.chain.one_by_one
            && self.chain.plugins.iter().any(|p| p.batches());
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
        let mut dropped: Vec<Option<Stop>> = flights.iter().map(|_| None).collect();
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
                let (verdict, step) = self.event_call(index, &plugin, &mut flights[i]);
                if self.steps.is_some() {
                    self.event_steps[i].push(step);
                }
                self.apply(index, &plugin, verdict, &mut flights[i], &mut dropped[i]);
            }
        }
        flights
            .into_iter()
            .zip(dropped)
            .map(|(flight, stopped)| match stopped {
                None => Outcome::Forward(flight.into_event()),
                Some(stop) => stop.outcome(flight.into_event()),
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
        dropped: &mut [Option<Stop>],
    ) -> bool {
        if self.ensure_instance(index).is_err() {
            // Counted and logged where it failed; one by one, each event tries again.
            return false;
        }
        // Moved out for the call (no copy) and back in after it, whatever it answered.
        let events: Vec<SseEvent> = part
            .iter()
            .map(|&i| std::mem::replace(&mut flights[i].event, convert::empty_event()))
            .collect();
        let (result, measured) =
            self.timed_call(index, part.len(), |instance| instance.on_events(&events));
        for (&i, event) in part.iter().zip(events) {
            flights[i].event = event;
        }
        // A plugin of 0.1 reads no facts, and those read before stay true unless a
        // verdict replaces the event (`InFlight::replace`).
        self.chain.metrics[index].batch_call();
        let verdicts = match result {
            Ok(verdicts) => verdicts,
            Err(failure) => {
                self.failed(
                    index,
                    &failure,
                    "on-events (retrying its events one at a time)",
                );
                return false;
            }
        };
        let limit = self.max_event_bytes;
        let direction = self.phase.as_ref().map_or(Direction::ToClient, |(d, _)| *d);
        let traced = self.steps.is_some();
        let mut passed = 0;
        for (&i, verdict) in part.iter().zip(verdicts) {
            if matches!(verdict, Verdict::Pass) {
                if traced {
                    self.event_steps[i].push(measured.step(index, StepVerdict::Pass));
                }
                passed += 1;
                continue;
            }
            let verdict = within_limit(Answer::from(verdict), limit)
                .and_then(|v| keeps_shape(direction, &flights[i].event, v));
            if traced {
                let mut step = measured.step(index, StepVerdict::of(&verdict));
                step.output = super::output_digest(&verdict);
                self.event_steps[i].push(step);
            }
            self.apply(index, plugin, verdict, &mut flights[i], &mut dropped[i]);
        }
        self.chain.metrics[index].pass_many(passed);
        true
    }
}
