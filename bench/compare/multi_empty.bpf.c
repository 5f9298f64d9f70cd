// Floor for the multi-counter spec: an empty tp_btf program on sys_enter.
#include <vmlinux.h>
#include "../../../agent/bpf/helpers.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define MAX_CPUS 1024

SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter_btf, struct pt_regs* regs, long int id) {
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
