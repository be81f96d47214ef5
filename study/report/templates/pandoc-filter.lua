-- study.render: Quarto-style callouts, numbering and cross-references for pandoc.
local IS_TYPST = FORMAT:match('typst') ~= nil
local NBSP = '\u{a0}'
local KIND = {fig = 'Figure', tbl = 'Table', sec = 'Section', eq = 'Equation'}
local CALLOUT = {note = 'Note', tip = 'Tip', warning = 'Warning',
                 important = 'Important', caution = 'Caution'}

local function fail(msg) error('study-render: ' .. msg, 0) end

local function typst_inline(inlines)
  local out = pandoc.write(pandoc.Pandoc({pandoc.Plain(inlines)}), 'typst')
  return (out:gsub('%s+$', ''))
end

-- callouts -------------------------------------------------------------------------------
local function callout(div)
  local kind
  for _, c in ipairs(div.classes) do
    local k = c:match('^callout%-(%a+)$')
    if k and CALLOUT[k] then kind = k end
  end
  if not kind then return nil end
  local body = pandoc.Blocks(div.content)
  local title
  if div.attributes.title then
    title = pandoc.utils.blocks_to_inlines(pandoc.read(div.attributes.title, 'markdown').blocks)
  elseif #body > 0 and body[1].t == 'Header' then
    title = body[1].content
    body:remove(1)
  else
    title = pandoc.Inlines{pandoc.Str(CALLOUT[kind])}
  end
  if IS_TYPST then
    local out = pandoc.Blocks{pandoc.RawBlock('typst',
      '#callout(kind: "' .. kind .. '", title: [' .. typst_inline(title) .. '])[')}
    out:extend(body)
    out:insert(pandoc.RawBlock('typst', ']'))
    return out
  end
  return pandoc.Div({
    pandoc.Div(pandoc.Plain(title), pandoc.Attr('', {'callout-title'})),
    pandoc.Div(body, pandoc.Attr('', {'callout-body'})),
  }, pandoc.Attr(div.identifier, {'callout', 'callout-' .. kind}))
end

-- numbering --------------------------------------------------------------------------------
local numbers = {}
local counts = {fig = 0, tbl = 0, eq = 0}

local function register(id, kind, n)
  if numbers[id] then fail('duplicate label #' .. id) end
  numbers[id] = {kind = kind, n = n}
end

local function prefix_caption(caption, label)
  local long = caption.long
  if #long == 0 then
    caption.long = pandoc.Blocks{pandoc.Plain{pandoc.Str(label)}}
    return caption
  end
  local first = long[1]
  if first.t == 'Plain' or first.t == 'Para' then
    first.content:insert(1, pandoc.Space())
    first.content:insert(1, pandoc.Str(label .. ':'))
  else
    long:insert(1, pandoc.Plain{pandoc.Str(label .. ':')})
  end
  caption.long = long
  return caption
end

local function number_float(el, kind)
  local id = el.identifier
  if not id:match('^' .. kind .. '%-') then return el end
  counts[kind] = counts[kind] + 1
  local n = tostring(counts[kind])
  register(id, kind, n)
  el.caption = prefix_caption(el.caption, KIND[kind] .. NBSP .. n)
  return el
end

local function equation(math, id)
  counts.eq = counts.eq + 1
  local n = tostring(counts.eq)
  register(id, 'eq', n)
  if IS_TYPST then
    local m = typst_inline({math})
    return pandoc.RawInline('typst',
      '#[#set math.equation(numbering: _ => "(' .. n .. ')")\n' .. m .. ' <' .. id .. '>]')
  end
  return pandoc.Span({math, pandoc.Span({pandoc.Str('(' .. n .. ')')},
                                        pandoc.Attr('', {'eq-number'}))},
                     pandoc.Attr(id, {'equation'}))
end

local function equations(inlines)
  local out = pandoc.Inlines{}
  local i = 1
  while i <= #inlines do
    local el = inlines[i]
    if el.t == 'Math' and el.mathtype == 'DisplayMath' then
      local j = i + 1
      while j <= #inlines and (inlines[j].t == 'Space' or inlines[j].t == 'SoftBreak') do
        j = j + 1
      end
      local label = j <= #inlines and inlines[j].t == 'Str' and
                    inlines[j].text:match('^{#(eq%-[^}%s]+)}$')
      if label then
        out:insert(equation(el, label))
        i = j + 1
      else
        out:insert(el)
        i = i + 1
      end
    else
      out:insert(el)
      i = i + 1
    end
  end
  return out
end

local function lone_fig_image(para)
  if #para.content ~= 1 or para.content[1].t ~= 'Image' then return nil end
  local img = para.content[1]
  if not img.identifier:match('^fig%-') then return nil end
  local id = img.identifier
  img.identifier = ''
  return pandoc.Figure({pandoc.Plain{img}}, pandoc.Caption(img.caption), pandoc.Attr(id))
end

local function min_header_level(doc)
  local lvl = 99
  doc.blocks:walk{Header = function(h)
    if not h.classes:includes('unnumbered') and h.level < lvl then lvl = h.level end
  end}
  return lvl
end

local function number_everything(doc, number_sections)
  local base = min_header_level(doc)
  local sec = {}
  return doc:walk{
    traverse = 'topdown',
    Header = function(h)
      if h.classes:includes('unnumbered') then return nil end
      local depth = h.level - base + 1
      sec[depth] = (sec[depth] or 0) + 1
      for k = depth + 1, #sec do sec[k] = nil end
      local parts = {}
      for k = 1, depth do parts[k] = tostring(sec[k] or 0) end
      local n = table.concat(parts, '.')
      if h.identifier ~= '' then register(h.identifier, 'sec', n) end
      if number_sections then
        h.content:insert(1, pandoc.Space())
        h.content:insert(1, pandoc.Span({pandoc.Str(n)},
                                        pandoc.Attr('', {'header-section-number'})))
      end
      return h
    end,
    Figure = function(f) return number_float(f, 'fig') end,
    Table = function(t)
      -- content-based column widths: pandoc's dash-proportional widths for long pipe-table
      -- rows squeeze numeric columns
      for i, spec in ipairs(t.colspecs) do t.colspecs[i] = {spec[1], nil} end
      return number_float(t, 'tbl')
    end,
    Para = function(p)
      local fig = lone_fig_image(p)
      if fig then return number_float(fig, 'fig') end
      p.content = equations(p.content)
      return p
    end,
    Plain = function(p)
      p.content = equations(p.content)
      return p
    end,
  }
end

-- references -------------------------------------------------------------------------------
local unresolved, seen = pandoc.List{}, {}

local function xref_kind(id)
  local prefix, rest = id:match('^(%a+)%-(.+)$')
  if prefix and KIND[prefix:lower()] then return prefix:lower(), prefix:lower() .. '-' .. rest end
  return nil
end

local function cite(c)
  local any = false
  for _, citation in ipairs(c.citations) do
    if xref_kind(citation.id) then any = true end
  end
  if not any then return nil end
  local out = pandoc.Inlines{}
  for i, citation in ipairs(c.citations) do
    local kind, id = xref_kind(citation.id)
    local entry = kind and numbers[id]
    if not entry or entry.kind ~= kind then
      if not seen[citation.id] then
        unresolved:insert('@' .. citation.id)
        seen[citation.id] = true
      end
    else
      if i > 1 then out:extend{pandoc.Str(','), pandoc.Space()} end
      if #citation.prefix > 0 then
        out:extend(citation.prefix)
        out:insert(pandoc.Space())
      end
      local text = entry.n
      if citation.mode ~= 'SuppressAuthor' then text = KIND[kind] .. NBSP .. entry.n end
      out:insert(pandoc.Link({pandoc.Str(text)}, '#' .. id))
      out:extend(citation.suffix)
    end
  end
  return out
end

-- images -----------------------------------------------------------------------------------
local cwd = pandoc.system.get_working_directory()

local function image(img)
  local src = img.src
  if src:match('^%a[%w+.-]*:') and not src:match('^%a:[/\\]') then return nil end
  local path = pandoc.path.is_absolute(src) and src or pandoc.path.join{cwd, src}
  local f = io.open(path, 'rb')
  if not f then fail('image not found: ' .. src) end
  f:close()
  if IS_TYPST then
    img.src = path:gsub('\\', '/')
    return img
  end
  return nil
end

function Pandoc(doc)
  local number_sections = doc.meta['study-number-sections'] == true
  doc.meta['study-number-sections'] = nil
  doc = doc:walk{Div = callout}
  doc = number_everything(doc, number_sections)
  doc = doc:walk{Cite = cite, Image = image}
  if #unresolved > 0 then
    fail('unresolved cross-reference(s): ' .. table.concat(unresolved, ', '))
  end
  return doc
end
