// reference: the reference filter in C (plugins/README.md, "The reference filter"),
// world `plugin` of sluice:plugin@0.2.0.
//
// Built by build.sh with clang-19 for wasm32-wasi as a reactor, on top of the C
// bindings that wit-bindgen generated into gen/ (regen.sh). No stdio, so no WASI
// import: wasi-libc's malloc, free, memcpy and memchr need none.
//
// Ownership (wit-bindgen C): the callee owns the arguments of an exported function.
// `on-message` gets a borrowed handle to the host's message and must drop it before it
// returns (the component model traps otherwise). `message.data()` and
// `message.sse-event()` copy into a buffer from malloc that this code owns. A `modify`
// verdict carries only the new data; the generated cabi_post_..._on-message frees it,
// as it frees an init error.
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

#define MARKER "[REDACTED]"
#define MARKER_LEN 10
#define LOG_MESSAGE "reference: redacted data in this stream"

typedef struct {
    uint8_t *ptr;
    size_t len;
} bytes_t;

typedef struct {
    bytes_t *items;
    size_t len;
} list_t;

static list_t redact_list, drop_methods, drop_events;
static bool logged;

// --- config: a JSON object of arrays of strings -------------------------------------

typedef struct {
    const uint8_t *p, *end;
    const char *error;
} parser_t;

static bool is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static void skip_ws(parser_t *ps) {
    while (ps->p < ps->end && is_ws(*ps->p)) ps->p++;
}

static bool expect(parser_t *ps, uint8_t c) {
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == c) {
        ps->p++;
        return true;
    }
    return false;
}

static int hex4(parser_t *ps) {
    if (ps->end - ps->p < 4) return -1;
    int v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = ps->p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return -1;
    }
    ps->p += 4;
    return v;
}

static size_t put_utf8(uint8_t *out, uint32_t cp) {
    if (cp < 0x80) { out[0] = cp; return 1; }
    if (cp < 0x800) { out[0] = 0xC0 | (cp >> 6); out[1] = 0x80 | (cp & 0x3F); return 2; }
    if (cp < 0x10000) {
        out[0] = 0xE0 | (cp >> 12); out[1] = 0x80 | ((cp >> 6) & 0x3F); out[2] = 0x80 | (cp & 0x3F);
        return 3;
    }
    out[0] = 0xF0 | (cp >> 18); out[1] = 0x80 | ((cp >> 12) & 0x3F);
    out[2] = 0x80 | ((cp >> 6) & 0x3F); out[3] = 0x80 | (cp & 0x3F);
    return 4;
}

// A JSON string (the opening quote not yet consumed), decoded to UTF-8 in a new buffer.
static bool parse_string(parser_t *ps, bytes_t *out) {
    if (!expect(ps, '"')) return false;
    // The decoded form is never longer than the escaped one.
    uint8_t *buf = malloc((size_t)(ps->end - ps->p) + 1);
    size_t n = 0;
    while (ps->p < ps->end) {
        uint8_t c = *ps->p++;
        if (c == '"') {
            out->ptr = buf;
            out->len = n;
            return true;
        }
        if (c < 0x20) break;  // control characters must be escaped
        if (c != '\\') {
            buf[n++] = c;
            continue;
        }
        if (ps->p >= ps->end) break;
        c = *ps->p++;
        switch (c) {
            case '"': case '\\': case '/': buf[n++] = c; break;
            case 'b': buf[n++] = '\b'; break;
            case 'f': buf[n++] = '\f'; break;
            case 'n': buf[n++] = '\n'; break;
            case 'r': buf[n++] = '\r'; break;
            case 't': buf[n++] = '\t'; break;
            case 'u': {
                int cp = hex4(ps);
                if (cp < 0) goto fail;
                if (cp >= 0xD800 && cp < 0xDC00) {  // a high surrogate needs a low one
                    if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u') goto fail;
                    ps->p += 2;
                    int lo = hex4(ps);
                    if (lo < 0xDC00 || lo >= 0xE000) goto fail;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp < 0xE000) {
                    goto fail;
                }
                n += put_utf8(buf + n, (uint32_t)cp);
                break;
            }
            default: goto fail;
        }
    }
fail:
    free(buf);
    return false;
}

static void free_list(list_t *l) {
    for (size_t i = 0; i < l->len; i++) free(l->items[i].ptr);
    free(l->items);
    l->items = NULL;
    l->len = 0;
}

// An array of strings.
static bool parse_list(parser_t *ps, list_t *l) {
    if (!expect(ps, '[')) { ps->error = "reference: a value is not an array of strings"; return false; }
    free_list(l);
    size_t cap = 0;
    skip_ws(ps);
    if (expect(ps, ']')) return true;
    for (;;) {
        if (l->len == cap) {
            cap = cap ? cap * 2 : 4;
            l->items = realloc(l->items, cap * sizeof(bytes_t));
        }
        if (!parse_string(ps, &l->items[l->len])) {
            ps->error = "reference: a value is not an array of strings";
            return false;
        }
        l->len++;
        if (expect(ps, ',')) continue;
        if (expect(ps, ']')) return true;
        ps->error = "reference: invalid JSON in an array";
        return false;
    }
}

static bool key_is(const bytes_t *key, const char *name) {
    return key->len == strlen(name) && memcmp(key->ptr, name, key->len) == 0;
}

static const char *parse_config(const uint8_t *text, size_t len) {
    parser_t ps = {text, text + len, NULL};
    free_list(&redact_list);
    free_list(&drop_methods);
    free_list(&drop_events);
    skip_ws(&ps);
    if (ps.p == ps.end) return NULL;  // empty config = {}
    if (!expect(&ps, '{')) return "reference: the config is not a JSON object";
    if (!expect(&ps, '}')) {
        for (;;) {
            bytes_t key;
            if (!parse_string(&ps, &key)) return "reference: invalid JSON in the config";
            list_t *target = key_is(&key, "redact")         ? &redact_list
                             : key_is(&key, "drop_methods") ? &drop_methods
                             : key_is(&key, "drop_events")  ? &drop_events
                                                            : NULL;
            free(key.ptr);
            if (!target) return "reference: unknown key in the config";
            if (!expect(&ps, ':')) return "reference: invalid JSON in the config";
            if (!parse_list(&ps, target)) return ps.error;
            if (expect(&ps, ',')) continue;
            if (expect(&ps, '}')) break;
            return "reference: invalid JSON in the config";
        }
    }
    skip_ws(&ps);
    if (ps.p != ps.end) return "reference: trailing characters after the config";
    for (size_t i = 0; i < redact_list.len; i++)
        if (redact_list.items[i].len == 0) return "reference: a redact entry is the empty string";
    return NULL;
}

// --- the filter ----------------------------------------------------------------------

static bool in_list(const list_t *l, const uint8_t *p, size_t len) {
    for (size_t i = 0; i < l->len; i++)
        if (l->items[i].len == len && memcmp(l->items[i].ptr, p, len) == 0) return true;
    return false;
}

// Offset of the first `needle` in `hay` at or after `from`, or -1.
static long find(const uint8_t *hay, size_t len, size_t from, const uint8_t *needle, size_t n) {
    while (from + n <= len) {
        const uint8_t *hit = memchr(hay + from, needle[0], len - n + 1 - from);
        if (!hit) return -1;
        size_t at = (size_t)(hit - hay);
        if (memcmp(hit, needle, n) == 0) return (long)at;
        from = at + 1;
    }
    return -1;
}

// Step 2: the method rule.
static bool method_matches(const uint8_t *d, size_t len) {
    if (drop_methods.len == 0) return false;
    size_t f = 0, l = len;
    while (f < len && is_ws(d[f])) f++;
    while (l > f && is_ws(d[l - 1])) l--;
    if (f == len || d[f] != '{' || d[l - 1] != '}') return false;
    static const uint8_t key[] = "\"method\"";
    long at;
    size_t from = 0;
    while ((at = find(d, len, from, key, 8)) >= 0) {
        from = (size_t)at + 1;
        size_t i = (size_t)at + 8;
        while (i < len && is_ws(d[i])) i++;
        if (i >= len || d[i] != ':') continue;
        i++;
        while (i < len && is_ws(d[i])) i++;
        if (i >= len || d[i] != '"') continue;
        i++;
        const uint8_t *close = memchr(d + i, '"', len - i);
        if (!close) continue;
        if (in_list(&drop_methods, d + i, (size_t)(close - (d + i)))) return true;
    }
    return false;
}

// Step 3: replaces every occurrence of `pat` in *data; false when there was none.
static bool replace_all(bytes_t *data, const bytes_t *pat) {
    size_t count = 0;
    long at;
    size_t from = 0;
    while ((at = find(data->ptr, data->len, from, pat->ptr, pat->len)) >= 0) {
        count++;
        from = (size_t)at + pat->len;
    }
    if (count == 0) return false;
    size_t len = data->len - count * pat->len + count * MARKER_LEN;
    uint8_t *out = malloc(len ? len : 1), *w = out;
    from = 0;
    while ((at = find(data->ptr, data->len, from, pat->ptr, pat->len)) >= 0) {
        memcpy(w, data->ptr + from, (size_t)at - from);
        w += (size_t)at - from;
        memcpy(w, MARKER, MARKER_LEN);
        w += MARKER_LEN;
        from = (size_t)at + pat->len;
    }
    memcpy(w, data->ptr + from, data->len - from);
    free(data->ptr);
    data->ptr = out;
    data->len = len;
    return true;
}

// --- the exports -----------------------------------------------------------------------

bool exports_sluice_plugin_handler_init(plugin_string_t *config, plugin_string_t *err) {
    const char *error = parse_config(config->ptr, config->len);
    plugin_string_free(config);
    logged = false;
    if (!error) return true;
    plugin_string_dup(err, error);
    return false;
}

// Step 1: whether the message's SSE event type (`message` when none or empty) is one
// of drop_events.
static bool event_dropped(sluice_plugin_types_borrow_message_t message) {
    static const uint8_t default_type[] = "message";
    plugin_string_t type;
    if (!sluice_plugin_types_method_message_sse_event(message, &type))
        return in_list(&drop_events, default_type, 7);
    bool dropped = type.len > 0 ? in_list(&drop_events, type.ptr, type.len)
                                : in_list(&drop_events, default_type, 7);
    plugin_string_free(&type);
    return dropped;
}

void exports_sluice_plugin_handler_on_message(exports_sluice_plugin_handler_borrow_message_t message,
                                              exports_sluice_plugin_handler_verdict_t *ret) {
    if (event_dropped(message)) {
        sluice_plugin_types_message_drop_borrow(message);
        ret->tag = SLUICE_PLUGIN_TYPES_VERDICT_DROP;
        return;
    }
    plugin_string_t text;
    sluice_plugin_types_method_message_data(message, &text);
    sluice_plugin_types_message_drop_borrow(message);
    if (method_matches(text.ptr, text.len)) {
        plugin_string_free(&text);
        ret->tag = SLUICE_PLUGIN_TYPES_VERDICT_DROP;
        return;
    }
    bool changed = false;
    bytes_t data = {text.ptr, text.len};
    for (size_t i = 0; i < redact_list.len; i++) changed |= replace_all(&data, &redact_list.items[i]);
    if (!changed) {
        plugin_string_free(&text);
        ret->tag = SLUICE_PLUGIN_TYPES_VERDICT_PASS;
        return;
    }
    if (!logged) {
        logged = true;
        plugin_string_t msg = {(uint8_t *)LOG_MESSAGE, sizeof(LOG_MESSAGE) - 1};
        sluice_plugin_log_log(SLUICE_PLUGIN_LOG_LEVEL_INFO, &msg);
    }
    // replace_all freed the original buffer and owns the new one.
    ret->tag = SLUICE_PLUGIN_TYPES_VERDICT_MODIFY;
    ret->val.modify.ptr = data.ptr;
    ret->val.modify.len = data.len;
}
