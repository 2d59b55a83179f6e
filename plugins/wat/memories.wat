;; world: filter
;;
;; memories: a module with four linear memories. Each on-event call grows each of
;; the three extra memories by 15 pages (960 KiB), then passes; a refused growth
;; traps. Under a 1 MiB cap counted per memory, every memory fits and the call
;; passes: the instance holds nearly 4 MiB. The cap is per instance, all memories
;; counted together, so the second growth is refused (out of memory).
;; Canonical-ABI layout notes: plugins/wat/README.md.
(module $memories
  (memory (export "memory") 1)
  (memory $m1 0)
  (memory $m2 0)
  (memory $m3 0)

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


  ;; on-event: func(event: sse-event) -> verdict
  (func $on_event (export "on-event")
        (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i64) (result i32)
    (if (i32.eq (memory.grow $m1 (i32.const 15)) (i32.const -1)) (then unreachable))
    (if (i32.eq (memory.grow $m2 (i32.const 15)) (i32.const -1)) (then unreachable))
    (if (i32.eq (memory.grow $m3 (i32.const 15)) (i32.const -1)) (then unreachable))
    (global.set $heap (i32.const 1024))
    (i32.store8 (i32.const 16) (i32.const 0))   ;; pass
    (i32.const 16))
)
