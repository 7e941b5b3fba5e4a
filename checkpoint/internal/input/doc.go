// Package input holds the input rules every checkpoint implementation
// applies before any write, so that they accept and reject the same input.
// Each check returns nil or an error matching checkpoint.ErrInvalidArgument
// that says what is wrong.
package input
