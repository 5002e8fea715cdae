// llmgate routing policy `cheapest`, written in JavaScript.
//
// The cheapest healthy deployment of the requested model group first, then the next
// cheapest, and so on; deployments that are cooling down (unhealthy) come last. Price is
// `price-in + price-out` (USD per token, from `input_cost_per_token` /
// `output_cost_per_token` in `litellm_params`); ties go by `order`, then config order.
// Candidates of other model groups (there for fallbacks) are ignored.
//
// Config (all optional), from `llmgate.routing.groups.<group>.config`:
//   {"max_price_per_mtok": 20}  leave out deployments whose price per million tokens
//                               ((price-in + price-out) * 1e6) is above the cap; when none
//                               is left, reject the request with a 400.
//
// Build: `scripts/build-plugins.sh` installs the locked build tools here (`npm install
// --no-save`), then runs `npm run build`: `jco componentize --backend qjs` (QuickJS, through
// componentize-qjs) against ../../wit, world `routing-policy`, which writes
// plugins/dist/policy-cheapest.wasm (about 1.6 MB). `--backend-qjs-disable-async` is
// required: the host does not enable the component-model async feature.
//
// Binding conventions (componentize-qjs): the exported interface `policy` is the exported
// object `policy`; record fields are camelCase (`modelGroup`, `priceIn`); enums are their
// WIT names as strings (`'rate-limited'`); a `tuple` is an array; an `option` is the value
// or `null`; `route`'s `result` is the returned list for `ok` and the thrown gateway-error
// object for `err`. The host's `log` is on the default import of `llmgate:plugin/host`.

import host from 'llmgate:plugin/host@0.1.0';

const NAME = 'cheapest';
const VERSION = '0.1.0';

/** Error classes after which the next deployment is worth trying. */
const RETRY_ON = ['rate-limited', 'overloaded', 'upstream', 'timeout', 'auth'];

/** `order` 0 means unset: after every deployment that sets one. */
const orderKey = (c) => (c.order === 0 ? Number.MAX_SAFE_INTEGER : c.order);

/** The policy's config, or the reason it is invalid. */
function parseConfig(configJson) {
  let config;
  try {
    config = JSON.parse(configJson || '{}');
  } catch (e) {
    return { error: `config is not JSON: ${e.message}` };
  }
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    return { error: 'config must be a JSON object' };
  }
  const cap = config.max_price_per_mtok;
  if (cap !== undefined && cap !== null && (typeof cap !== 'number' || !Number.isFinite(cap))) {
    return { error: 'max_price_per_mtok must be a number' };
  }
  return { maxPricePerMtok: cap ?? null };
}

/** The `err` case of `route`'s result (thrown): a gateway error the host renders for the client. */
function reject(status, cls, message) {
  return { class: cls, status, message, code: null, retryAfterMs: null };
}

export const policy = {
  /** Name and version, as `GET /plugins` shows them. */
  describe() {
    return [NAME, VERSION];
  },

  /** Order the attempts for one request. */
  route(configJson, req, candidates) {
    const config = parseConfig(configJson);
    if (config.error) {
      host.log('warn', `cheapest: ${config.error}`);
      throw reject(500, 'bad-request', `routing policy ${NAME}: ${config.error}`);
    }
    let group = candidates
      .map((c, index) => ({ c, index, price: c.priceIn + c.priceOut }))
      .filter(({ c }) => c.modelGroup === req.modelGroup);
    if (config.maxPricePerMtok !== null) {
      const cap = config.maxPricePerMtok;
      group = group.filter(({ price }) => price * 1e6 <= cap);
      if (group.length === 0) {
        throw reject(
          400,
          'bad-request',
          `no deployment of model group ${req.modelGroup} is under the price cap of ${cap} USD per million tokens`,
        );
      }
    }
    group.sort(
      (a, b) =>
        Number(!a.c.healthy) - Number(!b.c.healthy) ||
        a.price - b.price ||
        orderKey(a.c) - orderKey(b.c) ||
        a.index - b.index,
    );
    return group.map(({ c }) => ({ candidateId: c.id, when: RETRY_ON }));
  },
};
