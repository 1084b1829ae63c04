/**
 * Applies the header mutation stages a routing decision carries, in order, as Envoy's HeaderParser
 * does for each level: remove first, then (decided against the headers as they are after the
 * removals) every overwrite, then every append. Pure.
 */
import { HeaderAppendAction, type HeaderMutations } from '../core/xds/l7-model.ts';

/** Request or response headers: lower-case names, each with its values in order. */
export type HeaderValues = ReadonlyMap<string, readonly string[]>;

/** Returns new headers; `headers` is not modified. */
export function applyHeaderMutations(
  headers: HeaderValues,
  stages: readonly HeaderMutations[],
): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [k, v] of headers) out.set(k, [...v]);
  for (const stage of stages) {
    for (const name of stage.remove) out.delete(name);
    const overwrite: [string, string][] = [];
    const append: [string, string][] = [];
    for (const h of stage.add) {
      if (h.value === '' && !h.keepEmptyValue) continue;
      const present = (out.get(h.name)?.length ?? 0) > 0;
      switch (h.action) {
        case HeaderAppendAction.AppendIfExistsOrAdd:
          append.push([h.name, h.value]);
          break;
        case HeaderAppendAction.AddIfAbsent:
          if (!present) append.push([h.name, h.value]);
          break;
        case HeaderAppendAction.OverwriteIfExists:
          if (present) overwrite.push([h.name, h.value]);
          break;
        case HeaderAppendAction.OverwriteIfExistsOrAdd:
          overwrite.push([h.name, h.value]);
          break;
      }
    }
    for (const [name, value] of overwrite) out.set(name, [value]);
    for (const [name, value] of append) {
      const list = out.get(name);
      if (list) list.push(value);
      else out.set(name, [value]);
    }
  }
  return out;
}

/** A stage that sets each header to one value (how the CORS filter writes its response headers). */
export function overwriteStage(headers: readonly (readonly [string, string])[]): HeaderMutations {
  return {
    remove: [],
    add: headers.map(([name, value]) => ({
      name,
      value,
      action: HeaderAppendAction.OverwriteIfExistsOrAdd,
      keepEmptyValue: true,
    })),
  };
}
