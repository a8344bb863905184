// Package compute is the compute half of the batch service: pools, the
// compute nodes that make them up, the node channel agents talk to, and the
// scheduler that places tasks on free task slots.
//
// A pool's customer-written fields (display name, start task, metadata,
// image) are sealed with the account's DEK like jobs and tasks; node state
// lives in the server's memory. By default the server starts the nodes a
// pool asks for as local `custody node` processes (a Launcher); agents on
// other machines join with a node credential instead.
//
// When an account's key becomes inaccessible (OnKeyState), every node of
// its pools becomes unusable: running tasks are killed on their nodes and
// requeued (requeueCount+1), agents drop the pool's customer data, and no
// task starts until the key is back, when the nodes return to idle.
package compute
