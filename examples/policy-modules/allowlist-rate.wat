;; A netnat policy module (ABI 1, docs/policy-modules.md): an allow-list of remote prefixes
;; with a rate limit. Unsolicited inbound sessions are admitted only from 203.0.113.0/24 and
;; 198.51.100.0/25, at most 5 new ones per second of packet time (over all hosts); the rest
;; of the allowed remotes in that second are refused as `policy_rate_limited`, every other
;; remote as `policy_denied`.
;;
;;   netnat replay IN -o OUT --internal-prefix 10.100.0.0/16 --external-address 203.0.113.1 \
;;       --filter-policy examples/policy-modules/allowlist-rate.wat
(module
  (global $window_start (mut i64) (i64.const -1000))
  (global $admitted (mut i32) (i32.const 0))

  (func (export "netnat_abi_version") (result i32) (i32.const 1))

  ;; Whether `addr` is in `prefix`/`len`.
  (func $in_prefix (param $addr i32) (param $prefix i32) (param $len i32) (result i32)
    (i32.eq
      (i32.and (local.get $addr) (i32.shl (i32.const -1) (i32.sub (i32.const 32) (local.get $len))))
      (local.get $prefix)))

  (func (export "netnat_inbound")
    (param $protocol i32) (param $remote_addr i32) (param $remote_port i32)
    (param $internal_addr i32) (param $internal_port i32)
    (param $external_addr i32) (param $external_port i32)
    (param $flags i32) (param $now_ms i64) (result i32)
    ;; Not on the list: deny (2).
    (if (i32.eqz
          (i32.or
            (call $in_prefix (local.get $remote_addr) (i32.const 0xcb007100) (i32.const 24))   ;; 203.0.113.0/24
            (call $in_prefix (local.get $remote_addr) (i32.const 0xc6336400) (i32.const 25)))) ;; 198.51.100.0/25
      (then (return (i32.const 2))))
    ;; A new one-second window opens with the first packet after the last one closed.
    (if (i64.ge_s (i64.sub (local.get $now_ms) (global.get $window_start)) (i64.const 1000))
      (then
        (global.set $window_start (local.get $now_ms))
        (global.set $admitted (i32.const 0))))
    ;; Used up: rate-limited (3).
    (if (i32.ge_u (global.get $admitted) (i32.const 5))
      (then (return (i32.const 3))))
    (global.set $admitted (i32.add (global.get $admitted) (i32.const 1)))
    ;; Allow (1).
    (i32.const 1)))
