;; world: filter
;;
;; reference: the smallest reference filter, a documented subset of the reference
;; filter of plugins/README.md ("The reference filter"): only the method rule (step 2)
;; with drop_methods fixed to ["notifications/progress"]; no config, no redaction, no
;; logging. on-event answers `drop` when data is an *object* (first non-whitespace
;; byte `{`, last `}`) and some `"method"` key in it is followed by optional JSON
;; whitespace, `:`, optional whitespace and the bytes `"notifications/progress"`
;; (the value read up to the next `"`); otherwise `pass`.
;; Canonical-ABI layout notes: plugins/wat/README.md.
(module $reference
  (memory (export "memory") 1)

  ;; 16..72: the return area (56-byte verdict; only its discriminant is written).
  (data (i32.const 128) "\"method\"")                 ;; 8 bytes
  (data (i32.const 144) "notifications/progress\"")   ;; 23 bytes: the value and its closing quote

  ;; Bump allocator for the strings the host copies in (see README.md).
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

  ;; JSON whitespace: space, tab, LF, CR.
  (func $is_ws (param $c i32) (result i32)
    (i32.or (i32.or (i32.eq (local.get $c) (i32.const 0x20)) (i32.eq (local.get $c) (i32.const 0x09)))
            (i32.or (i32.eq (local.get $c) (i32.const 0x0a)) (i32.eq (local.get $c) (i32.const 0x0d)))))

  ;; 1 if the $len bytes at $a and $b are equal.
  (func $eq (param $a i32) (param $b i32) (param $len i32) (result i32)
    (local $i i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (if (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                    (i32.load8_u (i32.add (local.get $b) (local.get $i))))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1))

  ;; 1 if data matches the method rule for "notifications/progress".
  (func $progress (param $data i32) (param $len i32) (result i32)
    (local $end i32) (local $p i32) (local $q i32)
    (local.set $end (i32.add (local.get $data) (local.get $len)))
    ;; first non-whitespace byte must be `{`
    (local.set $p (local.get $data))
    (block $found
      (loop $skip
        (if (i32.ge_u (local.get $p) (local.get $end)) (then (return (i32.const 0))))
        (br_if $found (i32.eqz (call $is_ws (i32.load8_u (local.get $p)))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $skip)))
    (if (i32.ne (i32.load8_u (local.get $p)) (i32.const 0x7b)) (then (return (i32.const 0))))
    ;; last non-whitespace byte must be `}` (one exists: the `{` above)
    (local.set $q (i32.sub (local.get $end) (i32.const 1)))
    (block $found_last
      (loop $back
        (br_if $found_last (i32.eqz (call $is_ws (i32.load8_u (local.get $q)))))
        (local.set $q (i32.sub (local.get $q) (i32.const 1)))
        (br $back)))
    (if (i32.ne (i32.load8_u (local.get $q)) (i32.const 0x7d)) (then (return (i32.const 0))))
    ;; every occurrence of "method", left to right
    (local.set $p (local.get $data))
    (loop $occurrence
      (if (i32.gt_u (i32.add (local.get $p) (i32.const 8)) (local.get $end)) (then (return (i32.const 0))))
      (if (call $eq (local.get $p) (i32.const 128) (i32.const 8))
        (then
          (block $no_value
            (local.set $q (i32.add (local.get $p) (i32.const 8)))
            (block $ws1 (loop $l1
              (br_if $ws1 (i32.ge_u (local.get $q) (local.get $end)))
              (br_if $ws1 (i32.eqz (call $is_ws (i32.load8_u (local.get $q)))))
              (local.set $q (i32.add (local.get $q) (i32.const 1)))
              (br $l1)))
            (br_if $no_value (i32.ge_u (local.get $q) (local.get $end)))
            (br_if $no_value (i32.ne (i32.load8_u (local.get $q)) (i32.const 0x3a))) ;; ':'
            (local.set $q (i32.add (local.get $q) (i32.const 1)))
            (block $ws2 (loop $l2
              (br_if $ws2 (i32.ge_u (local.get $q) (local.get $end)))
              (br_if $ws2 (i32.eqz (call $is_ws (i32.load8_u (local.get $q)))))
              (local.set $q (i32.add (local.get $q) (i32.const 1)))
              (br $l2)))
            (br_if $no_value (i32.ge_u (local.get $q) (local.get $end)))
            (br_if $no_value (i32.ne (i32.load8_u (local.get $q)) (i32.const 0x22))) ;; '"'
            (local.set $q (i32.add (local.get $q) (i32.const 1)))
            ;; the value up to the next `"` equals notifications/progress
            ;; <=> the next 23 bytes are `notifications/progress"`
            (br_if $no_value (i32.gt_u (i32.add (local.get $q) (i32.const 23)) (local.get $end)))
            (if (call $eq (local.get $q) (i32.const 144) (i32.const 23))
              (then (return (i32.const 1)))))))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br $occurrence))
    (i32.const 0))

  ;; on-event: func(event: sse-event) -> verdict: drop (1) or pass (0).
  (func $on_event (export "on-event")
        (param i32 i32 i32 i32 i32 i32)
        (param $data i32) (param $data_len i32)
        (param i32 i64)
        (result i32)
    (i32.store8 (i32.const 16) (call $progress (local.get $data) (local.get $data_len)))
    (i32.const 16))
)
