//go:build unix && !linux

package process

func growPipe(fd uintptr, size int) {}
