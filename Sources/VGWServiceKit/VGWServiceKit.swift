// The service SDK.
