package batch

import "testing"

func TestExitDispositionOf(t *testing.T) {
	p := func(s string) *string { return &s }
	code := func(c int) *int { return &c }
	e := &ExitConditions{
		ExitCodes:          []ExitCodeMapping{{Code: 0, ExitOptions: ExitOptions{DependencyAction: p("block")}}, {Code: 3, ExitOptions: ExitOptions{JobAction: p("none")}}},
		ExitCodeRanges:     []ExitCodeRangeMapping{{Start: 3, End: 9, ExitOptions: ExitOptions{JobAction: p("disable"), DependencyAction: p("satisfy")}}},
		PreProcessingError: &ExitOptions{DependencyAction: p("satisfy")},
		Default:            &ExitOptions{JobAction: p("none")},
	}
	cases := []struct {
		name string
		e    *ExitConditions
		o    TaskOutcome
		want ExitDisposition
	}{
		{"no conditions, success", nil, TaskOutcome{ExitCode: code(0)}, ExitDisposition{"none", "satisfy"}},
		{"no conditions, failure", nil, TaskOutcome{ExitCode: code(1)}, ExitDisposition{"terminate", "block"}},
		{"listed 0 keeps the job action default", e, TaskOutcome{ExitCode: code(0)}, ExitDisposition{"none", "block"}},
		{"listed code before ranges; unset dependency action defaults", e, TaskOutcome{ExitCode: code(3)}, ExitDisposition{"none", "block"}},
		{"range", e, TaskOutcome{ExitCode: code(7)}, ExitDisposition{"disable", "satisfy"}},
		{"default for the rest", e, TaskOutcome{ExitCode: code(12)}, ExitDisposition{"none", "block"}},
		{"pre-processing error", e, TaskOutcome{ExitCode: code(-1), FailureCode: FailureCommandProgramNotFound}, ExitDisposition{"terminate", "satisfy"}},
		{"file upload error falls back to default", e, TaskOutcome{ExitCode: code(0), FailureCode: FailureFileUpload}, ExitDisposition{"none", "block"}},
		{"terminated: no exit code", e, TaskOutcome{FailureCode: "TaskEnded"}, ExitDisposition{"none", "block"}},
	}
	for _, c := range cases {
		if got := ExitDispositionOf(c.e, &c.o); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}
