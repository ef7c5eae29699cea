//go:build race

package tables_test

// raceDetector is true in a build with the race detector, whose instrumentation changes what allocates (the standard
// library's allocation tests stand aside under it too).
const raceDetector = true
