package main

import (
	"testing"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
)

func TestMain(m *testing.M) { ddbtest.Main(m) }
