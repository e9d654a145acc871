package main

import (
	"fmt"
	"strings"
)

// parsePairs reads the settings of `set`: either "key value" or any number
// of "key=value" (lxc accepts both).
func parsePairs(args []string) (map[string]string, error) {
	if len(args) == 2 && !strings.Contains(args[0], "=") {
		return map[string]string{args[0]: args[1]}, nil
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("missing key and value")
	}
	return parseAssignments(args)
}

// parseAssignments reads "key=value" arguments.
func parseAssignments(args []string) (map[string]string, error) {
	out := make(map[string]string, len(args))
	for _, arg := range args {
		k, v, ok := strings.Cut(arg, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("invalid key=value pair %q", arg)
		}
		out[k] = v
	}
	return out, nil
}
