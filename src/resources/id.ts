/** The FHIR `id` datatype (R4): 1 to 64 letters, digits, '-' and '.'. The one pattern for it. */
export const ID_PATTERN = '[A-Za-z0-9\\-.]{1,64}';

export const ID_RE = new RegExp(`^${ID_PATTERN}$`);

/** `Type/id` of a local reference (optionally versioned): type and id captured. */
export const LOCAL_REF_RE = new RegExp(`^([A-Z][A-Za-z]+)/(${ID_PATTERN})(/_history/[^/]+)?$`);
