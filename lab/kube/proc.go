package kube

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is a daemon the lab started, recorded so that another process (flowlens-lab down) can stop
// it: by PID, and only while /proc/PID/exe is still the binary that was started.
type Proc struct {
	Name  string   `json:"name"`
	PID   int      `json:"pid"`
	Exe   string   `json:"exe"`
	NetNS string   `json:"netns"` // the netns file it was started in
	Argv  []string `json:"argv"`
	Log   string   `json:"log"`

	done chan struct{} // closed when the child exits; nil for a Proc read from the state file
}

// startProc runs argv inside the network namespace file netnsPath, with nsenter --net rather than
// `ip netns exec`: the latter remounts /sys, and the kubelet and containerd then find no cgroup
// mounts. nsenter execs the binary, so the PID is the daemon's. The daemon gets its own session so
// a terminal's ^C reaches only flowlens-lab, which stops it in order.
func startProc(name, netnsPath, logPath string, argv []string) (*Proc, error) {
	exe, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if exe, err = filepath.Abs(exe); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: log: %w", name, err)
	}
	defer logf.Close()
	full := append([]string{"--net=" + netnsPath, "--", exe}, argv[1:]...)
	cmd := exec.Command("nsenter", full...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, PID: cmd.Process.Pid, Exe: exe, NetNS: netnsPath, Argv: argv, Log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // reaps the child; the exit shows in the log
		close(p.done)
	}()
	return p, nil
}

// restart starts the same command again (the API-outage test stops and restarts the apiserver).
func (p *Proc) restart() (*Proc, error) {
	return startProc(p.Name, p.NetNS, p.Log, p.Argv)
}

// running reports whether the process is alive and still the binary that was started.
func (p *Proc) running() bool {
	if p.done != nil {
		// This process's own child: exited is known exactly (and right after start the PID may
		// still be nsenter, before it execs the daemon).
		select {
		case <-p.done:
			return false
		default:
			return true
		}
	}
	exe, err := os.Readlink("/proc/" + strconv.Itoa(p.PID) + "/exe")
	if err != nil {
		return false
	}
	if stat, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/stat"); err == nil {
		// A zombie still has its exe link; field 3 after the command name is the state.
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && strings.HasPrefix(string(stat[i+1:]), " Z") {
			return false
		}
	}
	return strings.TrimSuffix(exe, " (deleted)") == p.Exe
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs. A process already gone is not an error.
func (p *Proc) stop(grace time.Duration) error {
	if !p.running() {
		return nil
	}
	if err := syscall.Kill(p.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop %s (pid %d): %w", p.Name, p.PID, err)
	}
	if p.wait(grace) {
		return nil
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s (pid %d): %w", p.Name, p.PID, err)
	}
	if !p.wait(5 * time.Second) {
		return fmt.Errorf("%s (pid %d) survived SIGKILL", p.Name, p.PID)
	}
	return nil
}

func (p *Proc) wait(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !p.running() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return !p.running()
}

// tail returns the last n bytes of the process's log, for error messages.
func (p *Proc) tail(n int) string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
