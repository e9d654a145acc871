package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moat/moat/api"
)

func (a *app) queryCommand() *cobra.Command {
	var method, data string
	var wait bool
	cmd := &cobra.Command{
		Use:   "query [remote:]PATH",
		Short: "Send a raw API request and print the response metadata as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			remote, path, err := a.parseRemote(args[0])
			if err != nil {
				return err
			}
			c, err := a.connect(remote)
			if err != nil {
				return err
			}
			var body any
			if data != "" {
				// Sent verbatim: judging the JSON is the server's job.
				body = []byte(data)
			}
			env, _, err := c.Query(cmd.Context(), strings.ToUpper(method), path, body)
			if err != nil {
				return err
			}
			meta := env.Metadata
			if wait && env.Type == api.AsyncResponse {
				op, err := c.OperationFromResponse(env)
				if err != nil {
					return err
				}
				if err := op.Wait(cmd.Context(), -1); err != nil {
					return err
				}
				if meta, err = json.Marshal(op.Metadata); err != nil {
					return err
				}
			}
			return a.printJSON(meta)
		},
	}
	cmd.Flags().StringVarP(&method, "request", "X", http.MethodGet, "HTTP method")
	cmd.Flags().StringVarP(&data, "data", "d", "", "request body (JSON)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for a background operation and print its metadata")
	return cmd
}

// printJSON prints raw metadata indented; null (no metadata) prints
// nothing, as with lxc.
func (a *app) printJSON(raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "    "); err != nil {
		return err
	}
	_, err := fmt.Fprintf(a.stdout, "%s\n", out.Bytes())
	return err
}
