// Benchmark (a): an empty program on the hook, i.e. the entry/exit floor.
#include <vmlinux.h>
#include "../../../agent/bpf/helpers.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

SEC("tp_btf/sys_enter")
int BPF_PROG(empty, struct pt_regs* regs, long id) {
    return 0;
}

char LICENSE[] SEC("license") = "GPL";

