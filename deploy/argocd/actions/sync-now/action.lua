-- Ask the operator for a sync run now: m3stripe.dev/requested-at gets the current time (UTC), and
-- the operator echoes it in status.lastHandledRequestedAt once the run started.
-- Argo CD's sandbox has no string library; its `os` offers only time() and date().
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["m3stripe.dev/requested-at"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
