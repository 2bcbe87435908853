package kvm

// StableAPIVersion is the only KVM_GET_API_VERSION value a userspace VMM
// should accept (Documentation/virt/kvm/api.rst, KVM_GET_API_VERSION).
const StableAPIVersion = 12
