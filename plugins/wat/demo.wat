;; world: interceptor
;;
;; demo: the plugin embedded in sluice for `sluice demo`.
;;   init             logs "demo plugin ready" (info) and accepts any config.
;;   on-stream-start, on-stream-end: nothing.
;;   on-event         drop   if data contains "notifications/progress" (with the quotes,
;;                           i.e. the JSON string: MCP progress notifications);
;;                    modify if data contains "sk-" followed by token bytes
;;                           (ASCII letters, digits, '-', '_'): each such byte becomes
;;                           '*' in place (same length), id/event/retry are copied
;;                           through, and "redacted a secret" is logged (info);
;;                    pass   otherwise.
;; Canonical-ABI layout notes: plugins/wat/README.md.
(module $demo
  ;; log: func(level: level, message: string); level info = 2
  (import "sluice:plugin/host@0.1.0" "log" (func $log (param i32 i32 i32)))

  (memory (export "memory") 1)

  ;; 16..72: the return area (56-byte verdict, or init's 12-byte result).
  (data (i32.const 128) "demo plugin ready")          ;; 17 bytes
  (data (i32.const 160) "redacted a secret")          ;; 17 bytes
  (data (i32.const 192) "\"notifications/progress\"") ;; 24 bytes
  (data (i32.const 224) "sk-")                        ;; 3 bytes

  ;; Bump allocator for the strings the host copies in (see README.md). The
  ;; static data and the return area live below 1024; the heap starts there.
  (global $heap (mut i32) (i32.const 1024))
  (func $cabi_realloc (export "cabi_realloc")
        (param $old i32) (param $old_size i32) (param $align i32) (param $size i32)
        (result i32)
    (local $ptr i32) (local $end i32) (local $pages i32)
    ;; ptr = align_up(heap, align); end = ptr + size (trap on overflow)
    (local.set $ptr
      (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
               (i32.sub (i32.const 0) (local.get $align))))
    (local.set $end (i32.add (local.get $ptr) (local.get $size)))
    (if (i32.lt_u (local.get $end) (local.get $ptr)) (then unreachable))
    ;; grow the memory if the block ends past it (the host's memory cap applies)
    (local.set $pages
      (i32.add (i32.shr_u (i32.sub (local.get $end) (i32.const 1)) (i32.const 16)) (i32.const 1)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
          (then unreachable))))
    (global.set $heap (local.get $end))
    ;; a real realloc keeps the old contents (the host only ever passes old = 0)
    (if (local.get $old)
      (then
        (memory.copy (local.get $ptr) (local.get $old)
          (select (local.get $old_size) (local.get $size)
                  (i32.lt_u (local.get $old_size) (local.get $size))))))
    (local.get $ptr))

  ;; Offset of the first $needle in $hay, or -1.
  (func $find (param $hay i32) (param $hay_len i32) (param $needle i32) (param $len i32)
        (result i32)
    (local $i i32) (local $j i32)
    (if (i32.gt_u (local.get $len) (local.get $hay_len)) (then (return (i32.const -1))))
    (loop $outer
      (local.set $j (i32.const 0))
      (block $mismatch
        (loop $inner
          (if (i32.eq (local.get $j) (local.get $len)) (then (return (local.get $i))))
          (br_if $mismatch
            (i32.ne (i32.load8_u (i32.add (i32.add (local.get $hay) (local.get $i)) (local.get $j)))
                    (i32.load8_u (i32.add (local.get $needle) (local.get $j)))))
          (local.set $j (i32.add (local.get $j) (i32.const 1)))
          (br $inner)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $outer (i32.le_u (local.get $i) (i32.sub (local.get $hay_len) (local.get $len)))))
    (i32.const -1))

  ;; ASCII letter, digit, '-' or '_'?
  (func $is_token (param $c i32) (result i32)
    (i32.or
      (i32.or (i32.lt_u (i32.sub (i32.or (local.get $c) (i32.const 0x20)) (i32.const 0x61)) (i32.const 26))
              (i32.lt_u (i32.sub (local.get $c) (i32.const 0x30)) (i32.const 10)))
      (i32.or (i32.eq (local.get $c) (i32.const 0x2d))
              (i32.eq (local.get $c) (i32.const 0x5f)))))

  ;; init: func(config: string) -> result<_, string>
  (func $init (export "init") (param $config i32) (param $config_len i32) (result i32)
    (call $log (i32.const 2) (i32.const 128) (i32.const 17))
    (global.set $heap (i32.const 1024))       ;; the config string is no longer needed
    (i32.store8 (i32.const 16) (i32.const 0))  ;; result discriminant 0 = ok
    (i32.const 16))

  ;; on-stream-start: func(info: stream-info); flat: stream-id i64, direction i32,
  ;; session-id (disc, ptr, len), method (ptr, len), path (ptr, len),
  ;; rpc-method (disc, ptr, len), protocol-version (disc, ptr, len).
  (func $on_stream_start (export "on-stream-start")
        (param i64 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)
    (global.set $heap (i32.const 1024)))

  ;; on-stream-end: func()
  (func $on_stream_end (export "on-stream-end"))

  ;; on-event: func(event: sse-event) -> verdict
  (func $on_event (export "on-event")
        (param $id_d i32) (param $id_p i32) (param $id_l i32)
        (param $ev_d i32) (param $ev_p i32) (param $ev_l i32)
        (param $data i32) (param $data_len i32)
        (param $retry_d i32) (param $retry i64)
        (result i32)
    (local $at i32) (local $k i32) (local $p i32) (local $end i32) (local $hit i32)

    ;; progress notification: drop (verdict discriminant 1)
    (if (i32.ge_s (call $find (local.get $data) (local.get $data_len) (i32.const 192) (i32.const 24))
                  (i32.const 0))
      (then
        (i32.store8 (i32.const 16) (i32.const 1))
        (return (i32.const 16))))

    ;; star out the token after every "sk-", in place
    (local.set $end (i32.add (local.get $data) (local.get $data_len)))
    (local.set $at (local.get $data))
    (block $done
      (loop $scan
        (local.set $k (call $find (local.get $at) (i32.sub (local.get $end) (local.get $at))
                                  (i32.const 224) (i32.const 3)))
        (br_if $done (i32.lt_s (local.get $k) (i32.const 0)))
        (local.set $p (i32.add (i32.add (local.get $at) (local.get $k)) (i32.const 3)))
        (block $token_end
          (loop $token
            (br_if $token_end (i32.ge_u (local.get $p) (local.get $end)))
            (br_if $token_end (i32.eqz (call $is_token (i32.load8_u (local.get $p)))))
            (i32.store8 (local.get $p) (i32.const 0x2a)) ;; '*'
            (local.set $hit (i32.const 1))
            (local.set $p (i32.add (local.get $p) (i32.const 1)))
            (br $token)))
        (local.set $at (local.get $p))
        (br $scan)))

    ;; nothing redacted: pass (discriminant 0)
    (if (i32.eqz (local.get $hit))
      (then
        (i32.store8 (i32.const 16) (i32.const 0))
        (return (i32.const 16))))

    ;; modify (discriminant 2) with the same event, its data now redacted.
    ;; The strings stay where the host put them until cabi_post_on-event.
    (call $log (i32.const 2) (i32.const 160) (i32.const 17))
    (i32.store8 (i32.const 16) (i32.const 2))
    (i32.store8 (i32.const 24) (local.get $id_d))     ;; id
    (i32.store  (i32.const 28) (local.get $id_p))
    (i32.store  (i32.const 32) (local.get $id_l))
    (i32.store8 (i32.const 36) (local.get $ev_d))     ;; event
    (i32.store  (i32.const 40) (local.get $ev_p))
    (i32.store  (i32.const 44) (local.get $ev_l))
    (i32.store  (i32.const 48) (local.get $data))     ;; data
    (i32.store  (i32.const 52) (local.get $data_len))
    (i32.store8 (i32.const 56) (local.get $retry_d))  ;; retry
    (i64.store  (i32.const 64) (local.get $retry))
    (i32.const 16))

  ;; The host calls this after it has read on-event's result: free everything.
  (func $cabi_post_on_event (export "cabi_post_on-event") (param i32)
    (global.set $heap (i32.const 1024)))
)
