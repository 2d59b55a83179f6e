//! {{name}}: a sluice plugin (world `plugin` of sluice:plugin@0.2.0), in Zig.
//!
//! What it does: refuses the `tools/call` of every tool named in its configuration
//! with a JSON-RPC error, and lets every other message through.
//!
//!   config: {"deny": ["delete_file", "shell"]}      (empty config: deny nothing)
//!
//! It declares in `init` that it wants only `tools/call` requests going to the server,
//! so every other message passes it without a call.
//!
//! Zig has no WIT bindgen: this uses the C bindings in gen/ (`wit-bindgen c`), turned
//! into Zig declarations by `zig translate-c` at build time (build.sh). Ownership is
//! wit-bindgen C's: an exported function owns its arguments; `on-message` gets a
//! borrowed handle to the message and must drop it before it returns;
//! `message.data()` copies into a buffer from libc `malloc` that this code frees; the
//! strings of a returned verdict are freed by the generated cabi_post_ function with
//! libc `free`, so they must come from libc `malloc`.

const std = @import("std");
const c = @import("target/plugin.zig"); // zig translate-c of gen/plugin.h (build.sh)

const NAME = "{{name}}";
/// The JSON-RPC error code of a refusal (MCP servers use -32000 to -32099).
const DENIED_CODE: i64 = -32001;

const libc = struct {
    extern "c" fn malloc(size: usize) ?*anyopaque;
    extern "c" fn free(ptr: ?*anyopaque) void;
};

const allocator = std.heap.c_allocator;

/// The tools to deny (set by init), and the parsed config that owns their names.
var denied: ?std.json.Parsed(std.json.Value) = null;

fn bytes(s: c.plugin_string_t) []const u8 {
    if (s.len == 0) return &.{};
    return s.ptr[0..s.len];
}

/// A copy of `text` in a libc-malloc'd string, for the bindings to free.
fn owned(text: []const u8) c.plugin_string_t {
    const p: [*]u8 = @ptrCast(libc.malloc(if (text.len == 0) 1 else text.len) orelse @trap());
    @memcpy(p[0..text.len], text);
    return .{ .ptr = p, .len = text.len };
}

fn isDenied(tool: []const u8) bool {
    const parsed = denied orelse return false;
    const list = parsed.value.object.get("deny") orelse return false;
    for (list.array.items) |item| {
        if (std.mem.eql(u8, item.string, tool)) return true;
    }
    return false;
}

/// null when the config is good (and kept in `denied`), else why not.
fn parseConfig(text: []const u8) ?[]const u8 {
    if (denied) |old| old.deinit();
    denied = null;
    if (std.mem.trim(u8, text, " \t\r\n").len == 0) return null; // deny nothing
    const parsed = std.json.parseFromSlice(std.json.Value, allocator, text, .{}) catch
        return NAME ++ ": invalid config JSON";
    const bad_shape = NAME ++ ": the config must be a JSON object like {\"deny\": [\"tool\"]}";
    if (parsed.value != .object) {
        parsed.deinit();
        return bad_shape;
    }
    var keys = parsed.value.object.iterator();
    while (keys.next()) |entry| {
        if (!std.mem.eql(u8, entry.key_ptr.*, "deny")) {
            parsed.deinit();
            return NAME ++ ": unknown config key; expected \"deny\"";
        }
        const ok = switch (entry.value_ptr.*) {
            .array => |list| for (list.items) |item| {
                if (item != .string) break false;
            } else true,
            else => false,
        };
        if (!ok) {
            parsed.deinit();
            return NAME ++ ": \"deny\" must be an array of tool names";
        }
    }
    denied = parsed;
    return null;
}

// --- the exports (names and types from the C bindings) ------------------------------

export fn exports_sluice_plugin_handler_init(config: [*c]c.plugin_string_t, err: [*c]c.plugin_string_t) bool {
    const failure = parseConfig(bytes(config.*));
    c.plugin_string_free(config);
    if (failure) |reason| {
        err.* = owned(reason);
        return false;
    }
    // Only requests going to the server, and only tools/call.
    c.sluice_plugin_interest_directions(true, false);
    var method = c.plugin_string_t{ .ptr = @constCast("tools/call".ptr), .len = "tools/call".len };
    var methods = c.plugin_list_string_t{ .ptr = &method, .len = 1 };
    c.sluice_plugin_interest_methods(&methods);
    return true;
}

export fn exports_sluice_plugin_handler_on_message(message: c.exports_sluice_plugin_handler_borrow_message_t, ret: [*c]c.exports_sluice_plugin_handler_verdict_t) void {
    defer c.sluice_plugin_types_message_drop_borrow(message);
    ret.*.tag = c.SLUICE_PLUGIN_TYPES_VERDICT_PASS;
    if (c.sluice_plugin_types_method_message_kind(message) != c.SLUICE_PLUGIN_TYPES_KIND_REQUEST) return;
    var text: c.plugin_string_t = undefined;
    c.sluice_plugin_types_method_message_data(message, &text);
    defer c.plugin_string_free(&text);

    // params.name of {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":..}}
    // A request this plugin cannot read (out of memory) must not pass unexamined: @trap
    // ends the call, and sluice's failure policy (closed by default) refuses it. (Not
    // @panic: its handler imports WASI.)
    const request = std.json.parseFromSlice(std.json.Value, allocator, bytes(text), .{}) catch @trap();
    defer request.deinit();
    if (request.value != .object) return;
    const params = request.value.object.get("params") orelse return;
    if (params != .object) return;
    const name = params.object.get("name") orelse return;
    if (name != .string or !isDenied(name.string)) return;

    const reason = std.fmt.allocPrint(allocator, "tool {s} is denied by " ++ NAME, .{name.string}) catch @trap();
    defer allocator.free(reason);
    ret.*.tag = c.SLUICE_PLUGIN_TYPES_VERDICT_RESPOND;
    ret.*.val.respond = .{ .is_err = true, .val = .{ .err = .{
        .code = DENIED_CODE,
        .message = owned(reason),
        .data = .{ .is_some = false, .val = undefined },
    } } };
}
