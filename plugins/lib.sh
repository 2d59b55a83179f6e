# Shared by the plugin build scripts (source it; needs $wasm_tools set).
#
# publish_component TMP OUT HINT: checks the freshly built component TMP (valid, exports
# the handler of a contract version: `sluice:plugin/handler@0.2.0` for world `plugin`,
# `on-event` for the 0.1 worlds; imports no WASI) and only then renames it to OUT. A
# running sluice watches the plugin files, so a file must appear complete or not at all. On failure TMP is
# removed, the reason is printed (HINT says what to look at) and the status is 1.
publish_component() {
    local tmp="$1" out="$2" hint="$3" wit
    if ! "$wasm_tools" validate "$tmp"; then
        echo "error: ${out##*/}: component does not validate" >&2
        rm -f "$tmp"; return 1
    fi
    wit="$("$wasm_tools" component wit "$tmp")"
    if ! grep -q -e '^  export sluice:plugin/handler@0\.2\.0;' -e 'export on-event: func' <<<"$wit"; then
        echo "error: ${out##*/}: component exports neither sluice:plugin/handler@0.2.0 nor on-event; its WIT is:" >&2
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
