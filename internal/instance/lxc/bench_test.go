package lxcdriver

import (
	"testing"
)

// BenchmarkStartStop is create (config dir) + start + clean stop.
func BenchmarkStartStop(b *testing.B) {
	spec := testSpec(b)
	c, err := New(spec)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Delete()
	for b.Loop() {
		if err := c.Start(); err != nil {
			b.Fatal(err)
		}
		if err := c.Stop(false, stopTimeout); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStart is create + start alone (force stop outside the timer).
func BenchmarkStart(b *testing.B) {
	spec := testSpec(b)
	c, err := New(spec)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Delete()
	for range b.N {
		if err := c.Start(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := c.Stop(true, 0); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkExecTrue runs `true` non-interactively and waits for it.
func BenchmarkExecTrue(b *testing.B) {
	c := startTest(b, testSpec(b))
	for b.Loop() {
		p, err := c.Exec(ExecSpec{Command: []string{"true"}})
		if err != nil {
			b.Fatal(err)
		}
		if code, err := p.Wait(); code != 0 || err != nil {
			b.Fatal(code, err)
		}
	}
}

// BenchmarkExecTerminal runs `true` on a pty of the container's devpts,
// reads the master to its end and waits.
func BenchmarkExecTerminal(b *testing.B) {
	c := startTest(b, testSpec(b))
	buf := make([]byte, 512)
	for b.Loop() {
		p, err := c.Exec(ExecSpec{Command: []string{"true"}, Terminal: true})
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := p.Terminal().Read(buf); err != nil {
				break
			}
		}
		p.Terminal().Close()
		if code, err := p.Wait(); code != 0 || err != nil {
			b.Fatal(code, err)
		}
	}
}
