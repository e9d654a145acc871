package main

import "github.com/spf13/cobra"

// addInstanceCommands adds the container commands (instances, images,
// profiles, storage).
func (a *app) addInstanceCommands(root *cobra.Command) {
	root.AddCommand(
		a.launchCommand(),
		a.initCommand(),
		a.stateCommand("start", "start", "Start instances"),
		a.stateCommand("stop", "stop", "Stop instances"),
		a.stateCommand("restart", "restart", "Restart instances"),
		a.stateCommand("pause", "freeze", "Pause (freeze) instances", "freeze"),
		a.stateCommand("resume", "unfreeze", "Resume (unfreeze) instances", "unfreeze"),
		a.deleteCommand(),
		a.renameCommand(),
		a.listCommand(),
		a.execCommand(),
		a.fileCommand(),
		a.imageCommand(),
		a.profileCommand(),
		a.storageCommand(),
	)
	for _, cmd := range root.Commands() {
		if cmd.Name() == "config" {
			a.extendConfigCommand(cmd)
		}
	}
}
