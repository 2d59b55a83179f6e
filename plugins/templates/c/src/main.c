// {{name}}: a sluice plugin (world `plugin` of sluice:plugin@0.2.0), in C.
//
// What it does: refuses the `tools/call` of every tool named in its configuration
// with a JSON-RPC error, and lets every other message through.
//
//   config: {"deny": ["delete_file", "shell"]}      (empty config: deny nothing)
//
// It declares in `init` that it wants only `tools/call` requests going to the server,
// so every other message passes it without a call.
//
// Built by build.sh (clang --target=wasm32-wasi, a reactor) against the bindings in
// gen/, which `wit-bindgen c` generated from wit/plugin.wit. No stdio anywhere: any
// printf-family call pulls in WASI, which sluice does not give plugins.
//
// Ownership (wit-bindgen C): an exported function owns its arguments; `on-message`
// gets a borrowed handle to the message and must drop it before it returns;
// `message.data()` copies into a malloc'd buffer this code owns and frees; the strings
// of a returned verdict are freed by the generated cabi_post_ function, so they must
// come from malloc.
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

#define PLUGIN_NAME "{{name}}"
// The JSON-RPC error code of a refusal (MCP servers use -32000 to -32099).
#define DENIED_CODE -32001

// --- a small JSON reader: enough to walk objects and decode strings -----------------

typedef struct {
    const uint8_t *p, *end;
} cursor_t;

typedef struct {
    uint8_t *ptr;
    size_t len;
} bytes_t;

static void skip_ws(cursor_t *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static bool eat(cursor_t *c, uint8_t ch) {
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

static int hex4(cursor_t *c) {
    if (c->end - c->p < 4) return -1;
    int v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t h = c->p[i];
        v <<= 4;
        if (h >= '0' && h <= '9') v |= h - '0';
        else if (h >= 'a' && h <= 'f') v |= h - 'a' + 10;
        else if (h >= 'A' && h <= 'F') v |= h - 'A' + 10;
        else return -1;
    }
    c->p += 4;
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

// A JSON string at the cursor, decoded to UTF-8 into a new malloc'd buffer (`out` may
// be NULL to skip it).
static bool read_string(cursor_t *c, bytes_t *out) {
    if (!eat(c, '"')) return false;
    // The decoded form is never longer than the escaped one.
    uint8_t *buf = malloc((size_t)(c->end - c->p) + 1);
    if (!buf) return false;
    size_t n = 0;
    while (c->p < c->end) {
        uint8_t ch = *c->p++;
        if (ch == '"') {
            if (out) { out->ptr = buf; out->len = n; } else free(buf);
            return true;
        }
        if (ch < 0x20) break;
        if (ch != '\\') { buf[n++] = ch; continue; }
        if (c->p >= c->end) break;
        ch = *c->p++;
        switch (ch) {
            case '"': case '\\': case '/': buf[n++] = ch; break;
            case 'b': buf[n++] = '\b'; break;
            case 'f': buf[n++] = '\f'; break;
            case 'n': buf[n++] = '\n'; break;
            case 'r': buf[n++] = '\r'; break;
            case 't': buf[n++] = '\t'; break;
            case 'u': {
                int cp = hex4(c);
                if (cp < 0) goto fail;
                if (cp >= 0xD800 && cp < 0xDC00) {
                    if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u') goto fail;
                    c->p += 2;
                    int lo = hex4(c);
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

// Nesting deeper than sluice itself reads (128): every message sluice hands over is
// read whole, so no padding of the arguments hides the tool's name.
#define MAX_DEPTH 256

// Skips any JSON value.
static bool skip_value(cursor_t *c, int depth) {
    if (depth > MAX_DEPTH) return false;
    skip_ws(c);
    if (c->p >= c->end) return false;
    uint8_t ch = *c->p;
    if (ch == '"') return read_string(c, NULL);
    if (ch == '{' || ch == '[') {
        uint8_t close = ch == '{' ? '}' : ']';
        c->p++;
        if (eat(c, close)) return true;
        do {
            if (ch == '{' && (!read_string(c, NULL) || !eat(c, ':'))) return false;
            if (!skip_value(c, depth + 1)) return false;
        } while (eat(c, ','));
        return eat(c, close);
    }
    // A number, true, false or null.
    const uint8_t *start = c->p;
    while (c->p < c->end && (strchr("+-.0123456789eEtruefalsn", *c->p) != NULL) && *c->p) c->p++;
    return c->p > start;
}

// Moves the cursor, at an object, to the value of its member `key`; false when the
// value there is not an object or has no such member.
static bool find_member(cursor_t *c, const char *key) {
    size_t key_len = strlen(key);
    if (!eat(c, '{')) return false;
    if (eat(c, '}')) return false;
    do {
        bytes_t name;
        if (!read_string(c, &name)) return false;
        bool found = name.len == key_len && memcmp(name.ptr, key, key_len) == 0;
        free(name.ptr);
        if (!eat(c, ':')) return false;
        if (found) return true;
        if (!skip_value(c, 0)) return false;
    } while (eat(c, ','));
    return false;
}

// --- the configuration: {"deny": [tool names]} --------------------------------------

static bytes_t *denied;
static size_t denied_len;

static void clear_denied(void) {
    for (size_t i = 0; i < denied_len; i++) free(denied[i].ptr);
    free(denied);
    denied = NULL;
    denied_len = 0;
}

// NULL when the config is good, else why not.
static const char *parse_config(const uint8_t *text, size_t len) {
    cursor_t c = {text, text + len};
    skip_ws(&c);
    if (c.p == c.end) return NULL; // no config: deny nothing
    if (!eat(&c, '{')) return PLUGIN_NAME ": the config must be a JSON object like {\"deny\": [\"tool\"]}";
    if (!eat(&c, '}')) {
        do {
            bytes_t key;
            if (!read_string(&c, &key) || !eat(&c, ':')) return PLUGIN_NAME ": invalid config JSON";
            bool is_deny = key.len == 4 && memcmp(key.ptr, "deny", 4) == 0;
            free(key.ptr);
            if (!is_deny) return PLUGIN_NAME ": unknown config key; expected \"deny\"";
            if (!eat(&c, '[')) return PLUGIN_NAME ": \"deny\" must be an array of tool names";
            clear_denied();
            if (eat(&c, ']')) continue;
            do {
                bytes_t name;
                if (!read_string(&c, &name)) return PLUGIN_NAME ": \"deny\" must be an array of tool names";
                bytes_t *grown = realloc(denied, (denied_len + 1) * sizeof(bytes_t));
                if (!grown) { free(name.ptr); return PLUGIN_NAME ": out of memory"; }
                denied = grown;
                denied[denied_len++] = name;
            } while (eat(&c, ','));
            if (!eat(&c, ']')) return PLUGIN_NAME ": \"deny\" must be an array of tool names";
        } while (eat(&c, ','));
        if (!eat(&c, '}')) return PLUGIN_NAME ": invalid config JSON";
    }
    skip_ws(&c);
    if (c.p != c.end) return PLUGIN_NAME ": text after the config's JSON object";
    return NULL;
}

static bool is_denied(const bytes_t *tool) {
    for (size_t i = 0; i < denied_len; i++)
        if (denied[i].len == tool->len && memcmp(denied[i].ptr, tool->ptr, tool->len) == 0) return true;
    return false;
}

// --- the exports -----------------------------------------------------------------------

bool exports_sluice_plugin_handler_init(plugin_string_t *config, plugin_string_t *err) {
    clear_denied();
    const char *error = parse_config(config->ptr, config->len);
    plugin_string_free(config);
    if (error) {
        plugin_string_dup(err, error);
        return false;
    }
    // Only requests going to the server, and only tools/call: nothing else costs a call.
    sluice_plugin_interest_directions(true, false);
    plugin_string_t method = {(uint8_t *)"tools/call", 10};
    plugin_list_string_t methods = {&method, 1};
    sluice_plugin_interest_methods(&methods);
    return true;
}

void exports_sluice_plugin_handler_on_message(exports_sluice_plugin_handler_borrow_message_t message,
                                              exports_sluice_plugin_handler_verdict_t *ret) {
    ret->tag = SLUICE_PLUGIN_TYPES_VERDICT_PASS;
    if (sluice_plugin_types_method_message_kind(message) != SLUICE_PLUGIN_TYPES_KIND_REQUEST) {
        sluice_plugin_types_message_drop_borrow(message);
        return;
    }
    plugin_string_t data;
    sluice_plugin_types_method_message_data(message, &data);
    sluice_plugin_types_message_drop_borrow(message);

    // params.name of {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":..}}
    cursor_t c = {data.ptr, data.ptr + data.len};
    bytes_t tool = {NULL, 0};
    bool named = find_member(&c, "params") && find_member(&c, "name") && read_string(&c, &tool);
    plugin_string_free(&data);
    if (!named || !is_denied(&tool)) {
        free(tool.ptr);
        return;
    }

    // "tool <name> is denied by <plugin>", in a malloc'd buffer the bindings free.
    static const char before[] = "tool ", after[] = " is denied by " PLUGIN_NAME;
    size_t len = sizeof(before) - 1 + tool.len + sizeof(after) - 1;
    uint8_t *text = malloc(len);
    if (!text) abort();
    memcpy(text, before, sizeof(before) - 1);
    memcpy(text + sizeof(before) - 1, tool.ptr, tool.len);
    memcpy(text + sizeof(before) - 1 + tool.len, after, sizeof(after) - 1);
    free(tool.ptr);

    ret->tag = SLUICE_PLUGIN_TYPES_VERDICT_RESPOND;
    ret->val.respond.is_err = true;
    ret->val.respond.val.err.code = DENIED_CODE;
    ret->val.respond.val.err.message.ptr = text;
    ret->val.respond.val.err.message.len = len;
    ret->val.respond.val.err.data.is_some = false;
}
