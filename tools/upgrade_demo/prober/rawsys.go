package main

// The loop's system calls, made raw: syscall.Socket, Read and the rest tell the Go runtime
// about each call, and its monitor thread then takes the processor away from a call that lasts
// more than 20 µs (a loopback connect does the whole handshake inside the call) and hands it
// back through other threads. Measured, that more than doubled the prober's system time and,
// with the loop thread real-time and the others not, made sends up to 50 ms late. A raw call
// blocks only this thread, and nothing else of the runtime runs.

import (
	"syscall"
	"unsafe"
)

func errOf(e syscall.Errno) error {
	if e != 0 {
		return e
	}
	return nil
}

func sockaddr(addr [4]byte, port int) syscall.RawSockaddrInet4 {
	sa := syscall.RawSockaddrInet4{Family: syscall.AF_INET, Addr: addr}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(port>>8), byte(port) // network byte order
	return sa
}

func rawSocket(typ int) (int, error) {
	fd, _, e := syscall.RawSyscall(syscall.SYS_SOCKET, syscall.AF_INET,
		uintptr(typ|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC), 0)
	return int(fd), errOf(e)
}

func rawConnect(fd int, sa *syscall.RawSockaddrInet4) error {
	_, _, e := syscall.RawSyscall(syscall.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(sa)),
		syscall.SizeofSockaddrInet4)
	return errOf(e)
}

// rawResetOnClose sets SO_LINGER to on, 0 s: close sends a reset.
func rawResetOnClose(fd int) {
	linger := syscall.Linger{Onoff: 1, Linger: 0}
	syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), syscall.SOL_SOCKET,
		syscall.SO_LINGER, uintptr(unsafe.Pointer(&linger)), syscall.SizeofLinger, 0)
}

func rawSoError(fd int) error {
	var code int32
	size := uint32(4)
	_, _, e := syscall.RawSyscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), syscall.SOL_SOCKET,
		syscall.SO_ERROR, uintptr(unsafe.Pointer(&code)), uintptr(unsafe.Pointer(&size)), 0)
	if e != 0 {
		return e
	}
	return errOf(syscall.Errno(code))
}

func rawSendto(fd int, b []byte, sa *syscall.RawSockaddrInet4) error {
	_, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])),
		uintptr(len(b)), 0, uintptr(unsafe.Pointer(sa)), syscall.SizeofSockaddrInet4)
	return errOf(e)
}

func rawRead(fd int, b []byte) (int, error) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])),
		uintptr(len(b)))
	return int(n), errOf(e)
}

func rawWrite(fd int, b []byte) error {
	_, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])),
		uintptr(len(b)))
	return errOf(e)
}

func rawClose(fd int) {
	syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0)
}

func rawEpollCtl(epfd, op, fd int, events uint32) error {
	ev := syscall.EpollEvent{Events: events, Fd: int32(fd)}
	_, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd),
		uintptr(unsafe.Pointer(&ev)), 0, 0)
	return errOf(e)
}

// rawEpollWait blocks this thread alone; msec -1 waits for an event (the timerfd is one).
func rawEpollWait(epfd int, events []syscall.EpollEvent, msec int) (int, error) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd),
		uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(msec), 0, 0)
	return int(n), errOf(e)
}

// rawArmTimer sets the timerfd to expire once at “at“ (CLOCK_MONOTONIC ns).
func rawArmTimer(fd int, at int64) error {
	spec := [4]int64{0, 0, at / 1e9, at % 1e9} // itimerspec: interval, then value
	_, _, e := syscall.RawSyscall6(syscall.SYS_TIMERFD_SETTIME, uintptr(fd),
		1 /* TFD_TIMER_ABSTIME */, uintptr(unsafe.Pointer(&spec)), 0, 0, 0)
	return errOf(e)
}
