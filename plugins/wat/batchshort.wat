;; world: batch-filter
;;
;; batchshort: a batch-capable filter that breaks the batch contract. `on-event`
;; passes; `on-events` answers an empty list whatever it is given, so every batch call
;; fails ("wrong number of verdicts") and sluice must retry its events one at a time.
;; Canonical-ABI layout notes: plugins/wat/README.md.
(module $batchshort
  (memory (export "memory") 1)

  ;; Bump allocator, as in pass.wat.
  (global $heap (mut i32) (i32.const 1024))
  (func $cabi_realloc (export "cabi_realloc")
        (param $old i32) (param $old_size i32) (param $align i32) (param $size i32)
        (result i32)
    (local $ptr i32) (local $end i32) (local $pages i32)
    (local.set $ptr
      (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
               (i32.sub (i32.const 0) (local.get $align))))
    (local.set $end (i32.add (local.get $ptr) (local.get $size)))
    (if (i32.lt_u (local.get $end) (local.get $ptr)) (then unreachable))
    (local.set $pages
      (i32.add (i32.shr_u (i32.sub (local.get $end) (i32.const 1)) (i32.const 16)) (i32.const 1)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
          (then unreachable))))
    (global.set $heap (local.get $end))
    (if (local.get $old)
      (then
        (memory.copy (local.get $ptr) (local.get $old)
          (select (local.get $old_size) (local.get $size)
                  (i32.lt_u (local.get $old_size) (local.get $size))))))
    (local.get $ptr))

  (func $cabi_post_on_event (export "cabi_post_on-event") (param i32)
    (global.set $heap (i32.const 1024)))
  (func $cabi_post_on_events (export "cabi_post_on-events") (param i32)
    (global.set $heap (i32.const 1024)))

  ;; on-event: func(event: sse-event) -> verdict; always pass (see pass.wat).
  (func $on_event (export "on-event")
        (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i64) (result i32)
    (i32.store8 (i32.const 16) (i32.const 0))
    (i32.const 16))

  ;; on-events: func(events: list<sse-event>) -> list<verdict>
  ;; params: the list (ptr, len); result: pointer to (ptr, len) of the verdict list.
  ;; Answers (0, 0): an empty list.
  (func $on_events (export "on-events") (param i32 i32) (result i32)
    (i32.store (i32.const 64) (i32.const 0))
    (i32.store (i32.const 68) (i32.const 0))
    (i32.const 64))
)
