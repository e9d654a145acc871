package operation

import (
	"context"
	"time"
)

// Wait blocks until the operation is final, timeout passes (negative =
// forever) or ctx ends; it reports whether the operation is final.
func (op *Operation) Wait(ctx context.Context, timeout time.Duration) bool {
	// A finished operation wins over an expired timeout: select alone
	// would pick between two ready cases at random.
	select {
	case <-op.done:
		return true
	default:
	}
	var after <-chan time.Time
	if timeout >= 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		after = t.C
	}
	select {
	case <-op.done:
		return true
	case <-after:
	case <-ctx.Done():
	}
	return false
}
