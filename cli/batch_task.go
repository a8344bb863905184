package cli

import "github.com/spf13/cobra"

// addTaskCommands adds az's task commands (create, show, list, delete, stop,
// reset) to the task group.
func (a *app) addTaskCommands(cmd *cobra.Command) {}
