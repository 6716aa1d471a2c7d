// Command labpod is the lab's only container image program, static so the image is FROM scratch.
// Without arguments it is the pod sandbox's pause process; `serve` listens on the scenario's
// ports; `connect` sends one scenario case on command (kubectl exec) and says how it went.
//
//	labpod                                      # pause: sleep until SIGTERM
//	labpod serve --tcp 8080,9090 --udp 5353     # accept TCP, echo UDP
//	labpod connect tcp 10.42.0.11:8080          # exit 0 connected, 1 refused or timed out
//	labpod send 500ms tcp 10.42.0.11:8080       # connect every 500ms until SIGTERM, log each result
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var err error
	switch {
	case len(os.Args) < 2:
		<-ctx.Done()
	case os.Args[1] == "serve":
		err = serve(ctx, os.Args[2:])
	case os.Args[1] == "connect" && len(os.Args) == 4:
		err = connect(ctx, os.Args[2], os.Args[3])
	case os.Args[1] == "send" && len(os.Args) == 5:
		err = send(ctx, os.Args[2], os.Args[3], os.Args[4])
	default:
		err = fmt.Errorf("usage: labpod [serve --tcp P,P --udp P,P | connect tcp|udp HOST:PORT | send EVERY tcp|udp HOST:PORT]")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "labpod:", err)
		os.Exit(1)
	}
}

func serve(ctx context.Context, args []string) error {
	ports := map[string][]string{}
	for i := 0; i+1 < len(args); i += 2 {
		flag := strings.TrimPrefix(args[i], "--")
		if flag != "tcp" && flag != "udp" {
			return fmt.Errorf("serve: unknown flag %s", args[i])
		}
		ports[flag] = append(ports[flag], strings.Split(args[i+1], ",")...)
	}
	for _, p := range ports["tcp"] {
		l, err := net.Listen("tcp", ":"+p)
		if err != nil {
			return fmt.Errorf("listen tcp %s: %w", p, err)
		}
		go acceptLoop(l)
	}
	for _, p := range ports["udp"] {
		c, err := net.ListenPacket("udp", ":"+p)
		if err != nil {
			return fmt.Errorf("listen udp %s: %w", p, err)
		}
		go echoLoop(c)
	}
	fmt.Println("serving", ports)
	<-ctx.Done()
	return nil
}

// acceptLoop answers each connection with one line, then closes it.
func acceptLoop(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.WriteString(c, "labpod\n")
			_, _ = io.Copy(io.Discard, c)
		}()
	}
}

func echoLoop(c net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = c.WriteTo(buf[:n], from)
	}
}

// connect makes one connection (TCP) or one request/answer (UDP) within 3 s.
func connect(ctx context.Context, proto, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, proto, addr)
	if err != nil {
		return fmt.Errorf("%s %s: %w", proto, addr, err)
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		return fmt.Errorf("%s %s: %w", proto, addr, err)
	}
	buf := make([]byte, 64)
	if _, err := c.Read(buf); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s %s: %w", proto, addr, err)
	}
	fmt.Println("connected", proto, addr)
	return nil
}

// send connects every interval until ctx ends: traffic that needs no API server to keep going
// (the API-outage test).
func send(ctx context.Context, every, proto, addr string) error {
	d, err := time.ParseDuration(every)
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		if err := connect(ctx, proto, addr); err != nil {
			fmt.Println("failed:", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
