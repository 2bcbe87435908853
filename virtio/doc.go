// Package virtio implements split virtqueues and the virtio-mmio transport (virtio 1.2 §2.7, §4.2).
package virtio
