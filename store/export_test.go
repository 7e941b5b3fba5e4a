package store

// ItemSize exposes the store's item size estimate to the external tests.
func ItemSize(c Commit, bucket, token string) int { return itemSize(c, bucket, token) }

// TokenLen is the length of a commit token.
var TokenLen = len(newToken())
