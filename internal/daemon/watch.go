package daemon

import (
	"errors"
	"os"
	"sync"

	"github.com/moat/moat/internal/errdefs"
	lxcdriver "github.com/moat/moat/internal/instance/lxc"
	"github.com/moat/moat/internal/store"
)

// A container can stop without the daemon asking: poweroff or halt inside,
// init exiting or being killed from the host. Every running container has
// one watch: a goroutine parked in the runtime's poller on a pidfd of init
// (no OS thread, no polling), which turns readable when init exits. The
// watch then does what an API stop does: records the power state, removes
// the run's leftovers, emits the lifecycle event and deletes an ephemeral
// instance.
//
// Stops the daemon makes itself (stop, restart, delete) hold the instance
// lock and do their own bookkeeping; the watch takes the same lock and
// re-checks, so it stays silent for them:
//   - a newer watch replaced it (the instance was started again: restart);
//   - the instance is gone (deleted, or an ephemeral one stopped);
//   - its power state is no longer RUNNING (stopped through the API).
//
// The daemon stopping leaves containers running: Shutdown calls the
// watches off and they end without touching anything.

// watches are the current watch per instance.
type watches struct {
	mu      sync.Mutex
	current map[string]*initWatch // project/name -> watch of the running init
	closed  bool
	wg      sync.WaitGroup
}

// initWatch waits for one run's init.
type initWatch struct {
	project, name string
	pidfd         *os.File // nil: init was gone before it could be opened
	pid           int
}

func (w *initWatch) key() string { return w.project + "/" + w.name }

// watchInit starts watching the running container of an instance,
// replacing (calling off) an earlier watch. Callers hold the instance lock.
func (d *Daemon) watchInit(project, name string, h *lxcdriver.Container) {
	pidfd, pid, err := h.InitPidfd()
	if err != nil && !errors.Is(err, lxcdriver.ErrNotRunning) {
		d.log.Warn("cannot watch the container for stops from inside", "name", name, "project", project, "err", err)
		return
	}
	// ErrNotRunning: init already exited; the watch settles it at once.
	w := &initWatch{project: project, name: name, pidfd: pidfd, pid: pid}
	ws := &d.ct.watches
	ws.mu.Lock()
	if ws.closed {
		ws.mu.Unlock()
		w.close()
		return
	}
	if ws.current == nil {
		ws.current = map[string]*initWatch{}
	}
	if old := ws.current[w.key()]; old != nil {
		old.close()
	}
	ws.current[w.key()] = w
	ws.wg.Add(1)
	ws.mu.Unlock()
	go d.waitInit(w)
}

// watchRunning watches every running container (moatd start: containers
// kept running while moatd was down are re-adopted).
func (d *Daemon) watchRunning(instances []store.Instance) {
	for _, in := range instances {
		l, err := d.loadInstance(in.Project, in.Name)
		if err != nil {
			continue // removed above (ephemeral and stopped)
		}
		h, err := d.handle(l)
		if err != nil {
			continue
		}
		if st, err := h.State(); err == nil && st.Status != lxcdriver.StatusStopped {
			d.watchInit(in.Project, in.Name, h)
		}
	}
}

// stopWatching calls every watch off and waits for a stop being recorded
// to finish; containers keep running.
func (d *Daemon) stopWatching() {
	if d.ct == nil {
		return
	}
	ws := &d.ct.watches
	ws.mu.Lock()
	ws.closed = true
	for _, w := range ws.current {
		w.close()
	}
	ws.mu.Unlock()
	ws.wg.Wait()
}

func (w *initWatch) close() {
	if w.pidfd != nil {
		w.pidfd.Close()
	}
}

// isCurrent reports whether w is still the instance's watch and the
// daemon is not stopping.
func (ws *watches) isCurrent(w *initWatch) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return !ws.closed && ws.current[w.key()] == w
}

// drop ends w if it is still the instance's watch.
func (ws *watches) drop(w *initWatch) {
	ws.mu.Lock()
	if ws.current[w.key()] == w {
		delete(ws.current, w.key())
	}
	ws.mu.Unlock()
	w.close()
}

func (d *Daemon) waitInit(w *initWatch) {
	defer d.ct.watches.wg.Done()
	if w.pidfd != nil {
		if err := lxcdriver.WaitExited(w.pidfd); err != nil {
			return // called off: replaced, or the daemon stops
		}
	}
	mu := d.ct.instLock(w.project, w.name)
	mu.Lock()
	defer mu.Unlock()
	if !d.ct.watches.isCurrent(w) {
		w.close()
		return
	}
	if err := d.initExited(w); err != nil {
		d.log.Warn("recording a container that stopped on its own", "name", w.name, "project", w.project, "err", err)
	}
}

// initExited does the bookkeeping of a stop the daemon did not make. The
// instance lock is held.
func (d *Daemon) initExited(w *initWatch) error {
	defer d.ct.watches.drop(w)
	l, err := d.loadInstance(w.project, w.name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil // deleted by the daemon
	}
	if err != nil {
		return err
	}
	if l.Config["volatile.last_state.power"] != "RUNNING" {
		return nil // stopped by the daemon, which recorded it
	}
	h, err := d.handle(l)
	if err != nil {
		return err
	}
	res, err := h.Settle(w.pidfd, w.pid)
	if err != nil {
		return err
	}
	url := instanceURL(w.project, w.name)
	if res.Running {
		// Rebooted from inside: liblxc started it again.
		d.log.Info("container rebooted from inside", "name", w.name, "project", w.project)
		d.watchInit(w.project, w.name, h)
		d.bus.Lifecycle("instance-restarted", url, w.project, nil, nil)
		return nil
	}
	action := "instance-stopped"
	if res.Ending.Clean() {
		action = "instance-shutdown"
	}
	d.log.Info("container stopped on its own", "name", w.name, "project", w.project, "action", action)
	return d.recordStopped(l, action, nil, true)
}
