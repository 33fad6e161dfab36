-- Re-enable an integration that disabled itself after successive errors: m3stripe.dev/reenable
-- gets a new value (the current time, UTC), which the operator echoes in status.lastHandledReenable.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["m3stripe.dev/reenable"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
