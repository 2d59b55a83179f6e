// passthrough (C, contract 0.1): world `filter` of sluice:plugin@0.1.0 as revised
// (../../wit/0.1.0-revised), bindings in gen-v0.1.0-revised-filter/. Built as
// dist/passthrough-c.wasm.
//
// `on-event` lets every event through. The host has already copied the whole event
// (id, type, data, retry) into this instance's memory, and the callee owns it, so it
// frees it. Next to passthrough-v0.2.c this measures what one event costs on each
// contract.

#include "filter.h"

void exports_filter_on_event(filter_sse_event_t *event, filter_verdict_t *ret) {
    filter_sse_event_free(event);
    ret->tag = SLUICE_PLUGIN_TYPES_VERDICT_PASS;
}
