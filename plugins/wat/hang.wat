;; world: interceptor
;;
;; hang: an interceptor whose on-event never returns (an empty infinite loop) on
;; client messages (to-server) and passes what goes to the client; init and the
;; stream calls return at once. Only the host's per-call deadline stops it: tests of
;; the failure policy on client requests, of the plugin time a request may use, and
;; of streams that must keep flowing meanwhile. Layout notes: README.md.
(module $hang
  (memory (export "memory") 1)

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

  ;; init: func(config: string) -> result<_, string>
  (func $init (export "init") (param i32 i32) (result i32)
    (global.set $heap (i32.const 1024))
    (i32.store8 (i32.const 16) (i32.const 0))  ;; ok
    (i32.const 16))

  ;; The direction of the current phase: 0 to-server, 1 to-client.
  (global $direction (mut i32) (i32.const 0))

  ;; on-stream-start: func(info: stream-info) (15 flat params, see demo.wat; the
  ;; second is the direction)
  (func $on_stream_start (export "on-stream-start")
        (param i64 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)
    (global.set $direction (local.get 1))
    (global.set $heap (i32.const 1024)))

  ;; on-stream-end: func()
  (func $on_stream_end (export "on-stream-end"))

  ;; on-event: func(event: sse-event) -> verdict
  (func $on_event (export "on-event")
        (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i64) (result i32)
    (if (i32.eqz (global.get $direction))
      (then (loop $forever (br $forever))))
    (i32.store8 (i32.const 16) (i32.const 0))   ;; pass
    (i32.const 16))

  ;; The host calls this after it has read on-event's result: free everything.
  (func $cabi_post_on_event (export "cabi_post_on-event") (param i32)
    (global.set $heap (i32.const 1024)))
)
