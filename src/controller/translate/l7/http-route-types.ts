/**
 * `gateway.networking.k8s.io/v1` (also v1beta1) HTTPRoute as the L7 translation reads it: decoded and
 * validated once by decode-http-route.ts, with the API server's defaults applied (a rule without
 * matches matches the path prefix `/`, a match without a path likewise, a backend weighs 1, a
 * redirect answers 302), plain readonly data (istio-api.md §1.5; Gateway API GEP-1426 for Service
 * parents).
 */
import type { Duration } from './types.ts';

/** Gateway API's core group, written `""`: Service is `{group: '', kind: 'Service'}`. */
export const CORE_GROUP = '';
export const GATEWAY_GROUP = 'gateway.networking.k8s.io';

export type PathMatchType = 'Exact' | 'PathPrefix' | 'RegularExpression';

export interface GatewayPathMatch {
  readonly type: PathMatchType;
  /** For PathPrefix as written (a trailing `/` is ignored when matching, as the spec says). */
  readonly value: string;
}

/** A header or query parameter match. Header names compare case-insensitively, query names exactly. */
export interface GatewayValueMatch {
  readonly type: 'Exact' | 'RegularExpression';
  readonly name: string;
  readonly value: string;
}

export interface GatewayRouteMatch {
  readonly path: GatewayPathMatch;
  readonly headers: readonly GatewayValueMatch[];
  readonly queryParams: readonly GatewayValueMatch[];
  /** An HTTP method (GET, POST, …); undefined: any. */
  readonly method: string | undefined;
}

/** `spec.parentRefs[]`, with group, kind and namespace defaulted. */
export interface GatewayParentRef {
  readonly group: string;
  readonly kind: string;
  /** The route's namespace when not written. */
  readonly namespace: string;
  readonly name: string;
  /** For a Service: a port name; empty when not set. */
  readonly sectionName: string;
  /** For a Service: a port number; undefined when not set (then every port). */
  readonly port: number | undefined;
}

/** A reference to a backend object, with group, kind and namespace defaulted. */
export interface GatewayObjectRef {
  readonly group: string;
  readonly kind: string;
  /** The route's namespace when not written. */
  readonly namespace: string;
  readonly name: string;
  /** Required for Services (the API server refuses a Service reference without it). */
  readonly port: number | undefined;
}

export interface GatewayHeaderModifier {
  /** Overwrites (or adds) the header; names as written. */
  readonly set: readonly (readonly [string, string])[];
  /** Appends a value. */
  readonly add: readonly (readonly [string, string])[];
  readonly remove: readonly string[];
}

export type GatewayPathModifier =
  | { readonly type: 'ReplaceFullPath'; readonly value: string }
  | { readonly type: 'ReplacePrefixMatch'; readonly value: string };

export interface GatewayRedirect {
  /** `http`, `https`, or empty: the request's. */
  readonly scheme: string;
  /** Empty: the request's. */
  readonly hostname: string;
  readonly path: GatewayPathModifier | undefined;
  /** undefined: the scheme's well-known port if a scheme is set, else the port being routed. */
  readonly port: number | undefined;
  /** 301, 302 (the default), 303, 307 or 308. */
  readonly statusCode: number;
}

export interface GatewayUrlRewrite {
  /** Empty: unchanged. */
  readonly hostname: string;
  readonly path: GatewayPathModifier | undefined;
}

export interface GatewayMirror {
  /** Where it was written, for problem paths: `spec.rules[0].filters[2].requestMirror`. */
  readonly path: string;
  readonly backendRef: GatewayObjectRef;
  /** 0..100 (from `percent` or `fraction`); undefined means 100. */
  readonly percent: number | undefined;
}

export interface GatewayBackendRef extends GatewayObjectRef {
  /** 0..1,000,000; 0 sends nothing. */
  readonly weight: number;
  /** The backend's own RequestHeaderModifier / ResponseHeaderModifier filters. */
  readonly requestHeaders: GatewayHeaderModifier | undefined;
  readonly responseHeaders: GatewayHeaderModifier | undefined;
}

export interface GatewayRouteRule {
  /** `spec.rules[].name`; empty when not set. */
  readonly name: string;
  /** At least one (a rule written without matches gets the default, path prefix `/`). */
  readonly matches: readonly GatewayRouteMatch[];
  readonly requestHeaders: GatewayHeaderModifier | undefined;
  readonly responseHeaders: GatewayHeaderModifier | undefined;
  readonly redirect: GatewayRedirect | undefined;
  readonly rewrite: GatewayUrlRewrite | undefined;
  readonly mirrors: readonly GatewayMirror[];
  readonly backendRefs: readonly GatewayBackendRef[];
  /** `timeouts.request`: the whole request; 0s disables. */
  readonly requestTimeout: Duration | undefined;
  /** `timeouts.backendRequest`: each try to a backend; 0s disables. */
  readonly backendRequestTimeout: Duration | undefined;
}

export interface GatewayHttpRoute {
  readonly namespace: string;
  readonly name: string;
  /** metadata.creationTimestamp (RFC 3339, sorts as text); empty when not set. */
  readonly creationTimestamp: string;
  readonly parentRefs: readonly GatewayParentRef[];
  readonly hostnames: readonly string[];
  readonly rules: readonly GatewayRouteRule[];
}
