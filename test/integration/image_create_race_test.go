package integration

import (
	"os"
	"sync"
	"testing"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/testdaemon"
)

// TestImageDeletedDuringCreate: an image deleted while an instance is
// being created from it never leaves the instance without its lower
// layer. Each round races a create against the image's delete; whichever
// wins, an instance that exists afterwards starts and runs commands, and
// one that does not exist left no storage.
func TestImageDeletedDuringCreate(t *testing.T) {
	path, fp := testdaemon.BusyboxImage(t)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := testdaemon.Start(t)
	for round := range 8 {
		mustSucceed(t, d, d.Do("POST", "/1.0/images", raw))
		var wg sync.WaitGroup
		var created api.Operation
		wg.Add(2)
		go func() {
			defer wg.Done()
			res := d.Do("POST", "/1.0/instances", map[string]any{
				"name": "race", "source": map[string]string{"type": "image", "fingerprint": fp},
			})
			if res.Status == 202 {
				created = wait(t, d, res)
			}
		}()
		go func() {
			defer wg.Done()
			mustSucceed(t, d, d.Do("DELETE", "/1.0/images/"+fp, nil))
		}()
		wg.Wait()
		if r := d.Do("GET", "/1.0/instances/race", nil); r.Status == 404 {
			if created.Status == "Success" {
				t.Fatalf("round %d: the create succeeded but the instance is gone", round)
			}
			continue
		}
		mustSucceed(t, d, d.Do("PUT", "/1.0/instances/race/state", map[string]any{"action": "start"}))
		if code, out := execOut(t, d, "race", "cat", "/etc/hostname"); code != 0 {
			t.Fatalf("round %d: the instance made while its image was deleted does not run: %d %q", round, code, out)
		}
		mustSucceed(t, d, d.Do("DELETE", "/1.0/instances/race?force=true", nil))
	}
}
