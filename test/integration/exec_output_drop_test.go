package integration

import (
	"context"
	"testing"

	"github.com/coder/websocket"
)

// TestExecOutputReaderVanishes: a client that never connected control
// and already ended stdin cleanly, then vanishes while the command still
// writes: the failed write to its output websocket is the only sign it
// left. The command is killed (and does not block for ever on a full
// pipe), and the daemon keeps nothing of the session.
func TestExecOutputReaderVanishes(t *testing.T) {
	d, _ := withImage(t)
	launch(t, d, "od1", nil)
	r := &leakRig{d: d, hc: d.HTTPClient()}
	ctx := context.Background()
	r.rounds(t, 1, 5, func(i int) {
		kids := snapshot(t, d).helperKids
		id, fds := r.wsExecOp(t, "od1", false, "sh", "-c", "while :; do echo xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; done")
		in := r.dial(t, ctx, id, fds["0"])
		out := r.dial(t, ctx, id, fds["1"])
		errc := r.dial(t, ctx, id, fds["2"])
		r.running(t, kids)
		// End of input, cleanly: the command goes on writing.
		if err := in.Close(websocket.StatusNormalClosure, ""); err != nil {
			t.Fatalf("closing stdin: %v", err)
		}
		out.CloseNow()
		errc.CloseNow()
		if op := r.opEnded(t, id); op.Status != "Success" || op.Metadata["return"] != float64(137) {
			t.Fatalf("writer whose reader vanished: %s %q, return %v", op.Status, op.Err, op.Metadata["return"])
		}
	})
}
