// Command stepkit is a pack step for the isolation tests (cmd/stella
// isolation_test.go): each argument pair is one probe, whose result is
// printed as one line. Built by those tests only.
//
//	listen            serve on the step's own loopback and connect to it
//	tcp ADDR          connect, send "ping", print the reply
//	unix PATH         the same over a Unix socket
//	lookup NAME       resolve a name
//	mem MIB           allocate and touch MIB MiB
//	fork N            start N children that sleep, holding them
package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"
)

func main() {
	args := os.Args[1:]
	code := 0
	for len(args) > 0 {
		op := args[0]
		var arg string
		if op != "listen" {
			arg, args = args[1], args[2:]
		} else {
			args = args[1:]
		}
		if !probe(op, arg) {
			code = 1
		}
	}
	os.Exit(code)
}

func probe(op, arg string) bool {
	switch op {
	case "listen":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Println("loopback failed:", err)
			return false
		}
		defer ln.Close()
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Write([]byte("pong\n"))
				c.Close()
			}
		}()
		return talk("tcp", ln.Addr().String(), "loopback")
	case "tcp", "unix":
		return talk(op, arg, arg)
	case "lookup":
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		defer cancel()
		if addrs, err := net.DefaultResolver.LookupHost(ctx, arg); err == nil && len(addrs) > 0 {
			fmt.Printf("resolved %s\n", arg)
			return true
		}
		fmt.Printf("unresolved %s\n", arg)
		return false
	case "mem":
		n, _ := strconv.Atoi(arg)
		var keep [][]byte
		for i := 0; i < n; i++ {
			b := make([]byte, 1<<20)
			for j := range b {
				b[j] = byte(j)
			}
			keep = append(keep, b)
		}
		fmt.Printf("allocated %d MiB\n", len(keep))
		return true
	case "fork":
		n, _ := strconv.Atoi(arg)
		for i := 0; i < n; i++ {
			if err := exec.Command("sleep", "30").Start(); err != nil {
				fmt.Printf("fork failed after %d: %v\n", i, err)
				return false
			}
		}
		fmt.Printf("forked %d\n", n)
		return true
	}
	fmt.Println("unknown probe", op)
	return false
}

func talk(network, addr, name string) bool {
	c, err := net.DialTimeout(network, addr, 3*time.Second)
	if err != nil {
		fmt.Printf("unreachable %s\n", name)
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintln(c, "ping")
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		fmt.Printf("unreachable %s\n", name)
		return false
	}
	fmt.Printf("reached %s: %s", name, reply)
	return true
}
