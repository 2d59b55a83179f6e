;; world: sluice:fixtures/filter-stdout
;;
;; wasi-stdout: a filter that imports WASI (wasi:cli/stdout, defined for tests in
;; wit-test/). on-event writes "wasi-stdout: <data>\n" to its stdout with
;; blocking-write-and-flush and answers pass. Without a capability in its config
;; the host must refuse to load it; with stdio granted the line reaches the proxy's
;; stdout; with another capability only, the write goes to an empty sink.
;; Canonical-ABI layout notes: plugins/wat/README.md.
(module $wasi_stdout
  ;; get-stdout: func() -> own<output-stream> (a handle)
  (import "wasi:cli/stdout@0.2.0" "get-stdout" (func $get_stdout (result i32)))
  ;; blocking-write-and-flush: (self, contents ptr, contents len, return area);
  ;; result<_, stream-error> at the return area: disc @0, stream-error @4.
  (import "wasi:io/streams@0.2.0" "[method]output-stream.blocking-write-and-flush"
    (func $write (param i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.0" "[resource-drop]output-stream"
    (func $drop_stream (param i32)))

  (memory (export "memory") 1)

  ;; 16..72: the verdict; 80..92: the write result.
  (data (i32.const 128) "wasi-stdout: ") ;; 13 bytes
  (data (i32.const 144) "\n")            ;; 1 byte

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
        (param i32 i32 i32 i32 i32 i32) (param $data i32) (param $data_len i32)
        (param i32 i64) (result i32)
    (local $out i32)
    (local.set $out (call $get_stdout))
    (call $write (local.get $out) (i32.const 128) (i32.const 13) (i32.const 80))
    (call $write (local.get $out) (local.get $data) (local.get $data_len) (i32.const 80))
    (call $write (local.get $out) (i32.const 144) (i32.const 1) (i32.const 80))
    (call $drop_stream (local.get $out))
    (i32.store8 (i32.const 16) (i32.const 0))   ;; pass
    (i32.const 16))

  ;; The host calls this after it has read on-event's result: free everything.
  (func $cabi_post_on_event (export "cabi_post_on-event") (param i32)
    (global.set $heap (i32.const 1024)))
)
