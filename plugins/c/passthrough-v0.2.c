// passthrough (C, contract 0.2): world `plugin` of sluice:plugin@0.2.0, bindings in
// gen/. Built as dist/passthrough-c-v0.2.wasm.
//
// `on-message` lets every message through without reading it: the message stays in
// the host and nothing is copied into this instance. The borrowed handle must still be
// dropped before returning. Next to passthrough.c (0.1, which receives a copy of every
// event) this measures what one event costs on each contract.

#include "plugin.h"

bool exports_sluice_plugin_handler_init(plugin_string_t *config, plugin_string_t *err) {
    (void)err;
    plugin_string_free(config);
    return true;
}

void exports_sluice_plugin_handler_on_message(exports_sluice_plugin_handler_borrow_message_t message,
                                              exports_sluice_plugin_handler_verdict_t *ret) {
    sluice_plugin_types_message_drop_borrow(message);
    ret->tag = SLUICE_PLUGIN_TYPES_VERDICT_PASS;
}
