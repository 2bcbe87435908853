// Package devices emulates the vmm's platform devices (UART, i8042, power port) and the bus that routes port-I/O and MMIO exits to them.
package devices
