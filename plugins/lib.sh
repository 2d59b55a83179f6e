# Shared by the plugin build scripts (source it; needs $wasm_tools set).
#
# publish_component TMP OUT HINT: checks the freshly built component TMP (valid, exports
# `on-event` (0.1) or the `handler` interface (0.2), imports no WASI) and only then
# renames it to OUT. A running sluice watches the plugin files, so a file must appear
# complete or not at all. On failure TMP is removed, the reason is printed (HINT says
# what to look at) and the status is 1.
publish_component() {
    local tmp="$1" out="$2" hint="$3" wit
    if ! "$wasm_tools" validate "$tmp"; then
        echo "error: ${out##*/}: component does not validate" >&2
        rm -f "$tmp"; return 1
    fi
    wit="$("$wasm_tools" component wit "$tmp")"
    if ! grep -qE 'export on-event: func|export sluice:plugin/handler@' <<<"$wit"; then
        echo "error: ${out##*/}: component exports neither on-event (0.1) nor handler (0.2); its WIT is:" >&2
        echo "$wit" >&2
        rm -f "$tmp"; return 1
    fi
    if grep -q 'import wasi:' <<<"$wit"; then
        echo "error: ${out##*/}: component imports WASI ($hint):" >&2
        grep 'import ' <<<"$wit" >&2
        rm -f "$tmp"; return 1
    fi
    mv "$tmp" "$out"
}
