// SPDX-License-Identifier: (MIT OR GPL-2.0)
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "record.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";
