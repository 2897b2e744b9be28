;; A netnat policy module (ABI 1, docs/policy-modules.md): full cone (endpoint-independent
;; filtering) for the mappings of internal UDP port 3478 only (a STUN/TURN agent that peers
;; must reach first), address-dependent filtering for everything else, whatever the NAT's
;; own filtering behaviours say. Refusals are counted as `policy_denied`.
;;
;;   netnat replay IN -o OUT --internal-prefix 10.100.0.0/16 --external-address 203.0.113.1 \
;;       --filter-policy examples/policy-modules/full-cone-3478.wat
(module
  (func (export "netnat_abi_version") (result i32) (i32.const 1))

  (func (export "netnat_inbound")
    (param $protocol i32) (param $remote_addr i32) (param $remote_port i32)
    (param $internal_addr i32) (param $internal_port i32)
    (param $external_addr i32) (param $external_port i32)
    (param $flags i32) (param $now_ms i64) (result i32)
    ;; UDP (17) to internal port 3478: allow (1).
    (if (i32.and (i32.eq (local.get $protocol) (i32.const 17))
                 (i32.eq (local.get $internal_port) (i32.const 3478)))
      (then (return (i32.const 1))))
    ;; Otherwise the internal endpoint must have sent to the remote's address (flag bit 1):
    ;; allow (1), else deny (2).
    (select (i32.const 1) (i32.const 2) (i32.and (local.get $flags) (i32.const 2)))))
