;; world: sluice:fixtures/interceptor-fs
;;
;; wasi-read: an interceptor that imports WASI (wasi:filesystem, defined for tests in
;; wit-test/) and reports what its preopened directory lets it do. init keeps the
;; config string (at most 512 bytes). on-event answers modify with id/event/retry
;; none and data:
;;   - "no preopened directory" when get-directories returns nothing;
;;   - config "": the guest path of the first preopened directory (e.g. "/data");
;;   - config "write:NAME": "opened for writing" if open-at(NAME, create, write) in
;;     the first preopen succeeds, "denied" if it fails;
;;   - any other config NAME: the first 64 KiB of NAME in the first preopen, or
;;     "denied" if it cannot be opened or read (a missing file, "../x", ...).
;; Without a capability in its config the host must refuse to load it.
;; Canonical-ABI layout notes: plugins/wat/README.md.
(module $wasi_read
  ;; get-directories: func() -> list<tuple<own<descriptor>, string>>, written to the
  ;; return area: list ptr @0, len @4; element (12 bytes): handle @0, name ptr @4, len @8.
  (import "wasi:filesystem/preopens@0.2.0" "get-directories" (func $get_dirs (param i32)))
  ;; open-at: (self, path-flags, path ptr, path len, open-flags, descriptor-flags,
  ;; return area); result<own<descriptor>, error-code>: disc @0, handle or code @4.
  (import "wasi:filesystem/types@0.2.0" "[method]descriptor.open-at"
    (func $open_at (param i32 i32 i32 i32 i32 i32 i32)))
  ;; read: (self, length, offset, return area); result<tuple<list<u8>, bool>,
  ;; error-code>: disc @0, bytes ptr @4, len @8, end-of-file @12 (or code @4).
  (import "wasi:filesystem/types@0.2.0" "[method]descriptor.read"
    (func $read (param i32 i64 i64 i32)))
  (import "wasi:filesystem/types@0.2.0" "[resource-drop]descriptor"
    (func $drop_descriptor (param i32)))

  (memory (export "memory") 1)

  ;; 16..72: the verdict (or init's result); 80..88 get-directories' result;
  ;; 88..96 open-at's; 96..112 read's. 512..1024: the config string.
  (data (i32.const 128) "no preopened directory") ;; 22 bytes
  (data (i32.const 160) "denied")                 ;; 6 bytes
  (data (i32.const 176) "opened for writing")     ;; 18 bytes
  (data (i32.const 208) "write:")                 ;; 6 bytes
  (data (i32.const 224) "config too long")        ;; 15 bytes
  (global $config_len (mut i32) (i32.const 0))

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
  (func $init (export "init") (param $ptr i32) (param $len i32) (result i32)
    (if (i32.gt_u (local.get $len) (i32.const 512))
      (then
        (i32.store8 (i32.const 16) (i32.const 1))   ;; err("config too long")
        (i32.store  (i32.const 20) (i32.const 224))
        (i32.store  (i32.const 24) (i32.const 15))
        (global.set $heap (i32.const 1024))
        (return (i32.const 16))))
    (memory.copy (i32.const 512) (local.get $ptr) (local.get $len))
    (global.set $config_len (local.get $len))
    (global.set $heap (i32.const 1024))
    (i32.store8 (i32.const 16) (i32.const 0))       ;; ok
    (i32.const 16))

  ;; on-stream-start: func(info: stream-info) (15 flat params, see demo.wat)
  (func $on_stream_start (export "on-stream-start")
        (param i64 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)
    (global.set $heap (i32.const 1024)))

  ;; on-stream-end: func()
  (func $on_stream_end (export "on-stream-end"))

  ;; The verdict modify(data = ptr/len), other fields none.
  (func $modify (param $ptr i32) (param $len i32) (result i32)
    (i32.store8 (i32.const 16) (i32.const 2))   ;; modify
    (i32.store8 (i32.const 24) (i32.const 0))   ;; id = none
    (i32.store8 (i32.const 36) (i32.const 0))   ;; event = none
    (i32.store  (i32.const 48) (local.get $ptr))
    (i32.store  (i32.const 52) (local.get $len))
    (i32.store8 (i32.const 56) (i32.const 0))   ;; retry = none
    (i32.const 16))

  ;; True when the config starts with "write:".
  (func $is_write (result i32)
    (local $i i32)
    (if (i32.lt_u (global.get $config_len) (i32.const 6)) (then (return (i32.const 0))))
    (block $differ
      (loop $next
        (br_if $differ
          (i32.ne (i32.load8_u (i32.add (i32.const 512) (local.get $i)))
                  (i32.load8_u (i32.add (i32.const 208) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $next (i32.lt_u (local.get $i) (i32.const 6))))
      (return (i32.const 1)))
    (i32.const 0))

  ;; Drops every descriptor of the get-directories list at 80.
  (func $drop_preopens
    (local $i i32) (local $list i32)
    (local.set $list (i32.load (i32.const 80)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (i32.load (i32.const 84))))
        (call $drop_descriptor
          (i32.load (i32.add (local.get $list) (i32.mul (local.get $i) (i32.const 12)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next))))

  ;; on-event: func(event: sse-event) -> verdict
  (func $on_event (export "on-event")
        (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i64) (result i32)
    (local $list i32) (local $dir i32) (local $file i32) (local $verdict i32)
    (call $get_dirs (i32.const 80))
    (if (i32.eqz (i32.load (i32.const 84)))
      (then (return (call $modify (i32.const 128) (i32.const 22)))))
    (local.set $list (i32.load (i32.const 80)))
    (local.set $dir (i32.load (local.get $list)))

    (if (i32.eqz (global.get $config_len))
      (then
        ;; the first preopen's guest path
        (local.set $verdict
          (call $modify (i32.load offset=4 (local.get $list))
                        (i32.load offset=8 (local.get $list))))
        (call $drop_preopens)
        (return (local.get $verdict))))

    (if (call $is_write)
      (then
        ;; open-at(no symlink-follow, NAME, create, write)
        (call $open_at (local.get $dir) (i32.const 0)
          (i32.const 518) (i32.sub (global.get $config_len) (i32.const 6))
          (i32.const 1) (i32.const 2) (i32.const 88))
        (if (i32.eqz (i32.load8_u (i32.const 88)))
          (then
            (call $drop_descriptor (i32.load (i32.const 92)))
            (local.set $verdict (call $modify (i32.const 176) (i32.const 18))))
          (else
            (local.set $verdict (call $modify (i32.const 160) (i32.const 6)))))
        (call $drop_preopens)
        (return (local.get $verdict))))

    ;; open-at(no symlink-follow, NAME, no open flags, read)
    (local.set $verdict (call $modify (i32.const 160) (i32.const 6)))  ;; "denied"
    (call $open_at (local.get $dir) (i32.const 0)
      (i32.const 512) (global.get $config_len) (i32.const 0) (i32.const 1) (i32.const 88))
    (if (i32.eqz (i32.load8_u (i32.const 88)))
      (then
        (local.set $file (i32.load (i32.const 92)))
        (call $read (local.get $file) (i64.const 65536) (i64.const 0) (i32.const 96))
        (if (i32.eqz (i32.load8_u (i32.const 96)))
          (then
            (local.set $verdict
              (call $modify (i32.load (i32.const 100)) (i32.load (i32.const 104))))))
        (call $drop_descriptor (local.get $file))))
    (call $drop_preopens)
    (local.get $verdict))

  ;; The host calls this after it has read on-event's result: free everything.
  (func $cabi_post_on_event (export "cabi_post_on-event") (param i32)
    (global.set $heap (i32.const 1024)))
)
