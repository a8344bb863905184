package server

import "custody/compute"

// Tasks returns the task writes of s's scheduler and node channel, fenced
// as they run there.
func (s *Server) Tasks() compute.Tasks { return s.tasks }
