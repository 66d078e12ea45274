-- wrk script: POST every request of a corpus (one OpenRTB JSON per line) in turn.
-- The corpus path comes from the CORPUS environment variable.
-- Each wrk thread starts at a different offset so connections do not send in lockstep.

local corpus = {}
local path = os.getenv("CORPUS") or "loadtest/scenarios/sim-mix/requests.jsonl"
for line in io.lines(path) do
  if #line > 0 then corpus[#corpus + 1] = line end
end
if #corpus == 0 then error("empty corpus: " .. path) end

local counter = 0
local statuses = {}

function setup(thread)
  counter = counter + 1
  thread:set("offset", counter * 7919)
end

function init(args)
  i = offset or 0
  codes = {}
end

function request()
  i = i + 1
  local body = corpus[(i % #corpus) + 1]
  return wrk.format("POST", "/openrtb2/bid", { ["Content-Type"] = "application/json" }, body)
end

function response(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
end

function done(summary, latency, requests)
  io.write(string.format("requests: %d, errors: connect %d read %d write %d status %d timeout %d\n",
    summary.requests, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout))
end
