//! reference: the reference filter in Zig (plugins/README.md, "The reference filter"),
//! world `plugin` of sluice:plugin@0.2.0.
//!
//! Zig has no WIT bindgen: this uses the C bindings in ../c/gen (wit-bindgen c), turned
//! into Zig declarations by `zig translate-c` at build time (build.sh). Ownership is
//! wit-bindgen C's: the callee owns exported-function arguments; `on-message` gets a
//! borrowed handle to the host's message and must drop it before it returns.
//! `message.data()` and `message.sse-event()` copy into buffers from libc `malloc` that
//! this code owns; the new data of a `modify` is freed by the generated
//! cabi_post_..._on-message with libc `free`, so every buffer handed back comes from
//! libc `malloc`.

const std = @import("std");
const c = @import("target/plugin.zig"); // zig translate-c of ../c/gen/plugin.h (build.sh)

/// From the wasi-libc that Zig links (-lc): the generated C code frees with `free`.
const libc = struct {
    extern "c" fn malloc(size: usize) ?*anyopaque;
    extern "c" fn realloc(ptr: ?*anyopaque, size: usize) ?*anyopaque;
    extern "c" fn free(ptr: ?*anyopaque) void;
};

const MARKER = "[REDACTED]";
const LOG_MESSAGE = "reference: redacted data in this stream";

const List = struct {
    items: [][]u8 = &.{},

    fn clear(self: *List) void {
        for (self.items) |item| libc.free(item.ptr);
        if (self.items.len > 0) libc.free(@ptrCast(self.items.ptr));
        self.items = &.{};
    }

    fn contains(self: *const List, value: []const u8) bool {
        for (self.items) |item| {
            if (std.mem.eql(u8, item, value)) return true;
        }
        return false;
    }
};

var redact_list: List = .{};
var drop_methods: List = .{};
var drop_events: List = .{};
var logged: bool = false;

fn alloc(n: usize) [*]u8 {
    const p = libc.malloc(if (n == 0) 1 else n) orelse @trap();
    return @ptrCast(p);
}

fn isWs(b: u8) bool {
    return b == ' ' or b == '\t' or b == '\n' or b == '\r';
}

// --- config: a JSON object of arrays of strings ------------------------------------

const Parser = struct {
    s: []const u8,
    i: usize = 0,

    fn skipWs(p: *Parser) void {
        while (p.i < p.s.len and isWs(p.s[p.i])) p.i += 1;
    }

    fn expect(p: *Parser, ch: u8) bool {
        p.skipWs();
        if (p.i < p.s.len and p.s[p.i] == ch) {
            p.i += 1;
            return true;
        }
        return false;
    }

    fn hex4(p: *Parser) ?u21 {
        if (p.s.len - p.i < 4) return null;
        var v: u21 = 0;
        for (p.s[p.i .. p.i + 4]) |ch| {
            const d: u21 = switch (ch) {
                '0'...'9' => ch - '0',
                'a'...'f' => ch - 'a' + 10,
                'A'...'F' => ch - 'A' + 10,
                else => return null,
            };
            v = v * 16 + d;
        }
        p.i += 4;
        return v;
    }

    /// A JSON string decoded to UTF-8 in a malloc'd buffer.
    fn string(p: *Parser) ?[]u8 {
        if (!p.expect('"')) return null;
        const buf = alloc(p.s.len - p.i + 1);
        var n: usize = 0;
        while (p.i < p.s.len) {
            var ch = p.s[p.i];
            p.i += 1;
            if (ch == '"') return buf[0..n];
            if (ch < 0x20) break;
            if (ch != '\\') {
                buf[n] = ch;
                n += 1;
                continue;
            }
            if (p.i >= p.s.len) break;
            ch = p.s[p.i];
            p.i += 1;
            const simple: ?u8 = switch (ch) {
                '"', '\\', '/' => ch,
                'b' => 8,
                'f' => 12,
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                else => null,
            };
            if (simple) |b| {
                buf[n] = b;
                n += 1;
                continue;
            }
            if (ch != 'u') break;
            var cp = p.hex4() orelse break;
            if (cp >= 0xD800 and cp < 0xDC00) {
                if (p.s.len - p.i < 6 or p.s[p.i] != '\\' or p.s[p.i + 1] != 'u') break;
                p.i += 2;
                const lo = p.hex4() orelse break;
                if (lo < 0xDC00 or lo >= 0xE000) break;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 and cp < 0xE000) break;
            n += std.unicode.utf8Encode(cp, buf[n .. n + 4]) catch break;
        }
        libc.free(buf);
        return null;
    }

    fn list(p: *Parser, out: *List) bool {
        if (!p.expect('[')) return false;
        out.clear();
        if (p.expect(']')) return true;
        var items: [*][]u8 = @ptrCast(@alignCast(alloc(@sizeOf([]u8) * 4)));
        var cap: usize = 4;
        var len: usize = 0;
        while (true) {
            if (len == cap) {
                cap *= 2;
                items = @ptrCast(@alignCast(libc.realloc(@ptrCast(items), @sizeOf([]u8) * cap) orelse @trap()));
            }
            const item = p.string() orelse {
                out.items = items[0..len];
                return false;
            };
            items[len] = item;
            len += 1;
            out.items = items[0..len];
            if (p.expect(',')) continue;
            return p.expect(']');
        }
    }
};

fn parseConfig(text: []const u8) ?[]const u8 {
    redact_list.clear();
    drop_methods.clear();
    drop_events.clear();
    var p = Parser{ .s = text };
    p.skipWs();
    if (p.i == text.len) return null; // empty config = {}
    if (!p.expect('{')) return "reference: the config is not a JSON object";
    if (!p.expect('}')) {
        while (true) {
            const key = p.string() orelse return "reference: invalid JSON in the config";
            defer libc.free(key.ptr);
            const target: *List = if (std.mem.eql(u8, key, "redact"))
                &redact_list
            else if (std.mem.eql(u8, key, "drop_methods"))
                &drop_methods
            else if (std.mem.eql(u8, key, "drop_events"))
                &drop_events
            else
                return "reference: unknown key in the config";
            if (!p.expect(':')) return "reference: invalid JSON in the config";
            if (!p.list(target)) return "reference: a value is not an array of strings";
            if (p.expect(',')) continue;
            if (p.expect('}')) break;
            return "reference: invalid JSON in the config";
        }
    }
    p.skipWs();
    if (p.i != text.len) return "reference: trailing characters after the config";
    for (redact_list.items) |item| {
        if (item.len == 0) return "reference: a redact entry is the empty string";
    }
    return null;
}

// --- the filter --------------------------------------------------------------------

/// Step 2: the method rule.
fn methodMatches(d: []const u8) bool {
    if (drop_methods.items.len == 0) return false;
    const first = std.mem.indexOfNone(u8, d, " \t\n\r") orelse return false;
    const last = std.mem.lastIndexOfNone(u8, d, " \t\n\r") orelse return false;
    if (d[first] != '{' or d[last] != '}') return false;
    var from: usize = 0;
    while (std.mem.indexOfPos(u8, d, from, "\"method\"")) |at| {
        from = at + 1;
        var i = at + 8;
        while (i < d.len and isWs(d[i])) i += 1;
        if (i >= d.len or d[i] != ':') continue;
        i += 1;
        while (i < d.len and isWs(d[i])) i += 1;
        if (i >= d.len or d[i] != '"') continue;
        i += 1;
        const close = std.mem.indexOfScalarPos(u8, d, i, '"') orelse continue;
        if (drop_methods.contains(d[i..close])) return true;
    }
    return false;
}

/// Step 3: replaces every occurrence of `pat` in `data.*` (malloc'd); false if none.
fn replaceAll(data: *[]u8, pat: []const u8) bool {
    const count = std.mem.count(u8, data.*, pat);
    if (count == 0) return false;
    const len = data.len - count * pat.len + count * MARKER.len;
    const out = alloc(len);
    var w: usize = 0;
    var from: usize = 0;
    while (std.mem.indexOfPos(u8, data.*, from, pat)) |at| {
        @memcpy(out[w .. w + (at - from)], data.*[from..at]);
        w += at - from;
        @memcpy(out[w .. w + MARKER.len], MARKER);
        w += MARKER.len;
        from = at + pat.len;
    }
    @memcpy(out[w..len], data.*[from..]);
    libc.free(data.ptr);
    data.* = out[0..len];
    return true;
}

fn bytes(s: c.plugin_string_t) []u8 {
    if (s.len == 0) return &.{};
    return s.ptr[0..s.len];
}

// --- the exports (names and types from the C bindings) ------------------------------

export fn exports_sluice_plugin_handler_init(config: [*c]c.plugin_string_t, err: [*c]c.plugin_string_t) bool {
    const failure = parseConfig(bytes(config.*));
    c.plugin_string_free(config);
    logged = false;
    const message = failure orelse return true;
    const buf = alloc(message.len);
    @memcpy(buf[0..message.len], message);
    err.* = .{ .ptr = buf, .len = message.len };
    return false;
}

/// Step 1: whether the message's SSE event type (`message` when none or empty) is one
/// of drop_events.
fn eventDropped(message: c.sluice_plugin_types_borrow_message_t) bool {
    var kind: c.plugin_string_t = undefined;
    if (!c.sluice_plugin_types_method_message_sse_event(message, &kind)) return drop_events.contains("message");
    defer c.plugin_string_free(&kind);
    return drop_events.contains(if (kind.len > 0) bytes(kind) else "message");
}

export fn exports_sluice_plugin_handler_on_message(message: c.exports_sluice_plugin_handler_borrow_message_t, ret: [*c]c.exports_sluice_plugin_handler_verdict_t) void {
    defer c.sluice_plugin_types_message_drop_borrow(message);
    if (eventDropped(message)) {
        ret.*.tag = c.SLUICE_PLUGIN_TYPES_VERDICT_DROP;
        return;
    }
    var text: c.plugin_string_t = undefined;
    c.sluice_plugin_types_method_message_data(message, &text);
    if (methodMatches(bytes(text))) {
        c.plugin_string_free(&text);
        ret.*.tag = c.SLUICE_PLUGIN_TYPES_VERDICT_DROP;
        return;
    }
    var data = bytes(text);
    var changed = false;
    for (redact_list.items) |pat| {
        if (replaceAll(&data, pat)) changed = true;
    }
    if (!changed) {
        c.plugin_string_free(&text);
        ret.*.tag = c.SLUICE_PLUGIN_TYPES_VERDICT_PASS;
        return;
    }
    if (!logged) {
        logged = true;
        var msg = c.plugin_string_t{ .ptr = @constCast(LOG_MESSAGE.ptr), .len = LOG_MESSAGE.len };
        c.sluice_plugin_log_log(c.SLUICE_PLUGIN_LOG_LEVEL_INFO, &msg);
    }
    // replaceAll freed the original buffer and owns the new one.
    ret.*.tag = c.SLUICE_PLUGIN_TYPES_VERDICT_MODIFY;
    ret.*.val.modify = .{ .ptr = data.ptr, .len = data.len };
}
