"""A T-VAN sandbox: answers invoice data (TDiep 203) as a provider and the tax authority would.

It runs as its own server process on loopback (`python -m tvan_sandbox`), started by
`make run` and by the tests. It checks what the tax authority checks, with its own code
(the signature with libxmlsec1 directly, not the portal's signing code), keeps a ledger of
what it accepted, and can be told to misbehave. See docs/tvan-sandbox.md.
"""
