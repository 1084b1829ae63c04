/**
 * The controller's L7 translation (issue 5): VirtualService / DestinationRule decoding, the Envoy
 * resources for every service port, and their encoding. See translate.ts for the mapping.
 */
export {
  decodeDestinationRule,
  decodeL7Object,
  decodeVirtualService,
  isL7Object,
  ISTIO_NETWORKING_VERSIONS,
  type Decoded,
  type DecodedL7Object,
} from './decode.ts';
export {
  decodeToJson,
  encodeCluster,
  encodeClusterLoadAssignment,
  encodeL7Resources,
  encodeListener,
  encodeRouteConfiguration,
  expandAny,
  resourceToJson,
  type EncodedResource,
} from './encode.ts';
export {
  translateL7,
  type L7Input,
  type L7Resources,
  type L7Result,
  type PortProtocol,
} from './translate.ts';
export { decodeIstioGateway, isIstioGateway } from './gateway-decode.ts';
export { translateIstioGateways, type GatewayInput, type GatewayResult } from './gateway-translate.ts';
export { RBAC_FILTER, translateAuthz, type AuthzProblem, type AuthzResult } from './authz.ts';
export type * from './types.ts';
